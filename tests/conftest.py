import os
import zlib

os.environ.setdefault("PCC_DEBUG", "1")  # every lowering in the tests is checked by verify_program
import numpy as np
import pytest
import torch


@pytest.fixture
def rng(request):
    """A fresh generator per test, seeded from the test's name so failures reproduce."""
    seed = zlib.crc32(request.node.nodeid.encode())
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def pytest_addoption(parser):
    parser.addoption(
        "--fuzz",
        type=int,
        default=0,
        help="cases per kind for tests/test_fuzz.py (default: the CI size); e.g. --fuzz 10000",
    )
