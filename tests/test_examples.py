"""Every shipped example compiles, verifies and evaluates; the Python examples run."""

import runpy
from pathlib import Path

import pytest
import torch

import pccompile as pc

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.pc")), ids=lambda p: p.name)
def test_pc_examples_compile_and_evaluate(path):
    model = pc.compile(path)
    x = model.sample(4, seed=0)
    lls = model(x)
    assert torch.isfinite(lls).all()


@pytest.mark.parametrize("script", ["networkx_example.py", "embed_in_torch.py"])
def test_python_examples_run(script):
    runpy.run_path(str(EXAMPLES / script), run_name="__main__")
