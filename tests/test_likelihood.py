"""Log-likelihoods from every front end against brute-force enumeration."""

import math

import numpy as np
import pytest
import torch
from helpers import all_assignments, random_circuit, reference_prob
from pccompile.ir import Domain, Variable

import pccompile as pc


def _compile64(src):
    return pc.compile(src, dtype=torch.float64)


@pytest.mark.parametrize("trial", range(12))
def test_full_evidence_matches_enumeration_and_sums_to_one(rng, trial):
    circuit = random_circuit(rng, num_vars=int(rng.integers(2, 6)))
    model = _compile64(circuit)
    xs = all_assignments(circuit)
    x = torch.tensor(xs)
    lls = model(x).detach().numpy()
    ref = np.array([reference_prob(circuit, r) for r in xs])
    assert np.all(np.isfinite(lls))
    np.testing.assert_allclose(np.exp(lls), ref, rtol=1e-9, atol=1e-15)
    assert math.isclose(np.exp(lls).sum(), 1.0, rel_tol=1e-9)


@pytest.mark.parametrize("trial", range(8))
def test_marginals_equal_sums_over_completions(rng, trial):
    circuit = random_circuit(rng, num_vars=int(rng.integers(2, 5)))
    model = _compile64(circuit)
    xs = all_assignments(circuit)
    full = {tuple(r): math.exp(float(model(torch.tensor([r]))[0].detach())) for r in xs}
    for _ in range(6):
        r = list(xs[int(rng.integers(len(xs)))])
        miss = rng.random(len(r)) < 0.5
        q = [-1 if m else v for v, m in zip(r, miss)]
        expect = sum(p for a, p in full.items() if all(m or a[i] == r[i] for i, m in enumerate(miss)))
        got = math.exp(float(model(torch.tensor([q]))[0].detach()))
        assert math.isclose(got, expect, rel_tol=1e-9, abs_tol=1e-15)
        # the explicit mask means the same as -1 entries
        got_mask = math.exp(float(model(torch.tensor([r]), missing=torch.tensor(miss))[0].detach()))
        assert math.isclose(got_mask, expect, rel_tol=1e-9, abs_tol=1e-15)


def test_all_missing_is_log_one(rng):
    circuit = random_circuit(rng, num_vars=4)
    model = _compile64(circuit)
    out = model(torch.full((3, 4), -1))
    np.testing.assert_allclose(out.detach().numpy(), 0.0, atol=1e-12)


@pytest.mark.parametrize("trial", range(4))
def test_gaussian_circuits_match_reference(rng, trial):
    circuit = random_circuit(rng, num_vars=3, gaussian=True)
    model = _compile64(circuit)
    real = next(i for i, v in enumerate(circuit.variables) if v.domain.is_real)
    rows = []
    for _ in range(10):
        r = [
            float(rng.integers(v.domain.num_cats)) if not v.domain.is_real else float(rng.normal())
            for v in circuit.variables
        ]
        rows.append(r)
    rows[0][real] = float("nan")
    lls = model(torch.tensor(rows, dtype=torch.float64)).detach().numpy()
    ref = np.log([reference_prob(circuit, r) for r in rows])
    np.testing.assert_allclose(lls, ref, rtol=1e-9)
    # marginalising the real variable: the discrete part sums to one
    xs = all_assignments(
        circuit.replace(
            variables=tuple(Variable(v.name, Domain(1) if v.domain.is_real else v.domain) for v in circuit.variables)
        )
    )
    xm = torch.tensor(xs, dtype=torch.float64)
    xm[:, real] = float("nan")
    assert math.isclose(float(model(xm).detach().exp().sum()), 1.0, rel_tol=1e-9)


@pytest.mark.parametrize("front", ["dsl", "networkx", "builder"])
@pytest.mark.parametrize("trial", range(4))
def test_every_front_end_gives_the_same_likelihoods(rng, front, trial):
    circuit = random_circuit(rng, num_vars=int(rng.integers(2, 5)), tie=(front != "networkx"))
    if front == "dsl":
        src = pc.print_circuit(circuit)
    elif front == "networkx":
        src = pc.to_networkx(circuit)
    else:
        src = circuit
    model = _compile64(src)
    xs = all_assignments(circuit)
    ref = np.array([reference_prob(circuit, r) for r in xs])
    np.testing.assert_allclose(model(torch.tensor(xs)).exp().detach().numpy(), ref, rtol=1e-6, atol=1e-12)


def test_float32_default_matches_float64(rng):
    circuit = random_circuit(rng, num_vars=5)
    m32, m64 = pc.compile(circuit), _compile64(circuit)
    x = torch.tensor(all_assignments(circuit))
    np.testing.assert_allclose(m32(x).detach().numpy(), m64(x).detach().numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(rng):
    circuit = random_circuit(rng, num_vars=5)
    cpu = _compile64(circuit)
    gpu = _compile64(circuit).to("cuda")
    x = torch.tensor(all_assignments(circuit))
    np.testing.assert_allclose(gpu(x.cuda()).cpu().detach().numpy(), cpu(x).detach().numpy(), rtol=1e-9)
