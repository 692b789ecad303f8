"""Every shipped example compiles, verifies and evaluates; the Python examples run."""

import math
import runpy
from pathlib import Path

import pytest
import torch
from helpers import reference_prob

import pccompile as pc

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.pc")), ids=lambda p: p.name)
def test_pc_examples_compile_and_evaluate(path):
    """Each example's log-likelihoods of its own samples (one with half its values missing)
    against a walk of its circuit in numpy, and the all-missing row at log 1: a normalised
    distribution."""
    model = pc.compile(path)
    x = model.sample(4, seed=0)
    x[1, ::2] = float("nan") if x.is_floating_point() else -1
    got = model(x).detach().double()
    circuit = model.to_circuit()
    rows = [[None if (v != v or v == -1) else v for v in r.tolist()] for r in x]
    want = torch.tensor([math.log(reference_prob(circuit, r)) for r in rows], dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    empty = torch.full((1, model.num_vars), float("nan") if x.is_floating_point() else -1)
    assert abs(float(model(empty.to(x.dtype)).detach()[0])) < 1e-5


def _normal(x: float, mean: float, std: float) -> float:
    return math.exp(-((x - mean) ** 2) / (2 * std**2)) / (std * math.sqrt(2 * math.pi))


def test_the_networkx_example_gives_the_mixture_by_hand():
    """Both front ends of examples/networkx_example.py against the mixture written out by hand:
    0.4 Bern(0.1) Cat(.2,.3,.5) N(-1, 0.5) + 0.6 Bern(0.8) Cat(.6,.3,.1) N(2, 1); the third row
    has a and h missing (marginalised)."""
    g = runpy.run_path(str(EXAMPLES / "networkx_example.py"), run_name="__main__")
    expect = [
        0.4 * 0.9 * 0.5 * _normal(0.5, -1, 0.5) + 0.6 * 0.2 * 0.1 * _normal(0.5, 2, 1),
        0.4 * 0.1 * 0.2 * _normal(-1, -1, 0.5) + 0.6 * 0.8 * 0.6 * _normal(-1, 2, 1),
        0.4 * 0.3 + 0.6 * 0.3,
    ]
    expect = torch.tensor([math.log(p) for p in expect])
    torch.testing.assert_close(g["a"].detach().double(), expect.double(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g["b"].detach().double(), expect.double(), rtol=1e-5, atol=1e-5)


def test_the_embedding_example_learns_the_gaussian():
    """examples/embed_in_torch.py fits a linear flow and a mixture to Gaussian data of covariance
    A^T A, A = [[2, 0.5], [0, 0.3]]: its final NLL must come near that Gaussian's entropy,
    log(2 pi e) + log det(A^T A) / 2 = 2.327 nats (a broken gradient path stays far above)."""
    g = runpy.run_path(str(EXAMPLES / "embed_in_torch.py"), run_name="__main__")
    A = torch.tensor([[2.0, 0.5], [0.0, 0.3]], dtype=torch.float64)
    entropy = math.log(2 * math.pi * math.e) + 0.5 * math.log(torch.linalg.det(A.T @ A).item())
    assert g["loss"].item() < entropy + 0.08
