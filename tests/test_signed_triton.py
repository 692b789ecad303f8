"""The signed circuits' Triton kernels under TRITON_INTERPRET=1 against the torch pass and
float64 enumeration, over buffers poisoned with NaN (a row never written shows up)."""

import os

DEVICE = os.environ.get("PCC_TEST_DEVICE", "cpu")  # cuda: the compiled kernels on a GPU
if DEVICE == "cpu":
    os.environ["TRITON_INTERPRET"] = "1"

import numpy as np
import pytest
import torch
from helpers import all_assignments, random_circuit
from pccompile.ir import Circuit, InputNode, SumNode, Variable
from pccompile.ir.distributions import BINARY
from test_signed import _direct, _signed, _values

import pccompile as pc
from pccompile.signed import SignedCircuit

pytest.importorskip("triton")
pytestmark = pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # log 0 = -inf, meant


def test_triton_kernels_match_enumeration_and_torch(rng, monkeypatch):
    monkeypatch.setattr("pccompile.signed.program.SignedProgram.poison", True)
    for _ in range(4):
        c = _signed(random_circuit(rng, int(rng.integers(2, 4))), rng)
        rows = all_assignments(c)
        got = _values(SignedCircuit(c, target="triton").to(DEVICE), rows)
        np.testing.assert_allclose(got, [_direct(c, r) for r in rows], rtol=2e-4, atol=1e-7)
        np.testing.assert_allclose(got, _values(SignedCircuit(c, target="torch"), rows), rtol=1e-5, atol=1e-8)


def test_triton_kernels_give_exact_zeros_for_cancellations():
    ber = pc.Bernoulli()
    nodes = {0: InputNode(0, "p", 0, 1, ber), 1: InputNode(1, "q", 0, 1, ber), 2: SumNode(2, "root", (0, 1), 1)}
    params = {0: {"p": np.array([0.3], np.float32)}, 1: {"p": np.array([0.3], np.float32)}}
    params[2] = {"weights": np.array([[1.0, -1.0]], np.float32)}
    c = Circuit((Variable("a", BINARY),), nodes, 2, params, {"signed": True})
    la, sg = SignedCircuit(c, target="triton").to(DEVICE).signed_values(torch.tensor([[0.0], [1.0]]))
    assert torch.all(la == -torch.inf) and torch.all(sg == 0)
