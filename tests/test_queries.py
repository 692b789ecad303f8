"""Conditional, MPE and sampling against brute force."""

import math

import numpy as np
import pytest
import torch
from helpers import all_assignments, random_circuit, reference_prob

import pccompile as pc
from pccompile.runtime.queries import max_product_value


def deterministic_circuit(rng, num_vars=4):
    """A random decision-tree circuit: each sum branches on one variable's value (disjoint
    supports), so it is deterministic and max-product decoding is exact."""
    cats = [int(rng.integers(2, 4)) for _ in range(num_vars)]

    def region(vs):
        if len(vs) == 1:
            return pc.inputs(vs[0], 1, pc.Categorical(cats[vs[0]]))
        v = vs[int(rng.integers(len(vs)))]
        rest = [u for u in vs if u != v]
        branches = []
        for value in range(cats[v]):
            probs = np.full((1, cats[v]), 0.0)
            probs[0, value] = 1.0
            ind = pc.inputs(v, 1, pc.Categorical(cats[v]), probs=probs)
            branches.append(pc.multiply(ind, region(rest)))
        w = rng.uniform(0.2, 1.0, size=(1, cats[v]))
        return pc.summate(*branches, size=1, weights=w / w.sum())

    from pccompile.ir import Domain, Variable

    root = region(list(range(num_vars)))
    return pc.to_circuit(pc.build(root, [Variable(f"x{i}", Domain(k)) for i, k in enumerate(cats)]))


def _brute_argmax(circuit, row):
    best, arg = -1.0, None
    for a in all_assignments(circuit):
        if all(r < 0 or r == v for r, v in zip(row, a)):
            p = reference_prob(circuit, a)
            if p > best:
                best, arg = p, a
    return arg, best


@pytest.mark.parametrize("trial", range(6))
def test_mpe_is_exact_on_deterministic_circuits(rng, trial):
    from pccompile.passes import InitParams

    circuit = InitParams(seed=trial).run(deterministic_circuit(rng, num_vars=int(rng.integers(2, 5))))
    model = pc.compile(circuit, dtype=torch.float64)
    rows = []
    for _ in range(8):
        a = all_assignments(circuit)[int(rng.integers(len(all_assignments(circuit))))]
        rows.append([v if rng.random() < 0.4 else -1 for v in a])
    rows.append([-1] * circuit.num_vars)
    out = model.mpe(torch.tensor(rows))
    for row, got in zip(rows, out.tolist()):
        arg, best = _brute_argmax(circuit, row)
        assert math.isclose(reference_prob(circuit, got), best, rel_tol=1e-9), (row, got, arg)
        assert all(r < 0 or r == g for r, g in zip(row, got))  # evidence kept


@pytest.mark.parametrize("trial", range(6))
def test_mpe_assignment_scores_at_least_the_max_product_value(rng, trial):
    circuit = random_circuit(rng, num_vars=int(rng.integers(2, 5)))
    model = pc.compile(circuit, dtype=torch.float64)
    rows = torch.tensor(
        [[v if rng.random() < 0.3 else -1 for v in a] for a in all_assignments(circuit)[:6]] + [[-1] * circuit.num_vars]
    )
    out = model.mpe(rows)
    assert (out >= 0).all()
    mp = max_product_value(model, rows)
    lp = model(out).detach()
    assert torch.all(lp >= mp - 1e-9)


@pytest.mark.parametrize("trial", range(5))
def test_conditional_sums_to_one(rng, trial):
    circuit = random_circuit(rng, num_vars=int(rng.integers(2, 5)))
    model = pc.compile(circuit, dtype=torch.float64)
    V = circuit.num_vars
    query = torch.tensor(rng.random(V) < 0.5)
    query[int(rng.integers(V))] = True
    ev = all_assignments(circuit)[int(rng.integers(len(all_assignments(circuit))))]
    completions = [a for a in all_assignments(circuit) if all(q or a[i] == ev[i] for i, q in enumerate(query))]
    lc = model.conditional(torch.tensor(completions), query).detach()
    assert math.isclose(float(lc.exp().sum()), 1.0, rel_tol=1e-9)
    joint = np.array([reference_prob(circuit, a) for a in completions])
    np.testing.assert_allclose(lc.exp().numpy(), joint / joint.sum(), rtol=1e-9)


def _chi2_ok(counts, probs, n):
    """Pearson chi-square below a far-tail bound (df + 6 sqrt(2 df)), cells with tiny mass pooled."""
    exp = probs * n
    big = exp >= 5
    obs = np.append(counts[big], counts[~big].sum())
    e = np.append(exp[big], exp[~big].sum())
    keep = e > 0
    stat = float(((obs[keep] - e[keep]) ** 2 / e[keep]).sum())
    df = max(int(keep.sum()) - 1, 1)
    return stat < df + 6 * math.sqrt(2 * df), stat, df


@pytest.mark.parametrize("trial", range(4))
def test_sample_frequencies_match_exact_probabilities(rng, trial):
    circuit = random_circuit(rng, num_vars=3)
    model = pc.compile(circuit, dtype=torch.float64)
    xs = all_assignments(circuit)
    probs = np.array([reference_prob(circuit, a) for a in xs])
    n = 20000
    s = model.sample(n, seed=trial).numpy()
    index = {tuple(a): k for k, a in enumerate(xs)}
    counts = np.bincount([index[tuple(r)] for r in s.tolist()], minlength=len(xs)).astype(float)
    ok, stat, df = _chi2_ok(counts, probs, n)
    assert ok, (stat, df)
    # the same seed gives the same samples
    assert torch.equal(model.sample(50, seed=7), model.sample(50, seed=7))


def test_conditional_sampling_keeps_evidence_and_follows_the_posterior(rng):
    circuit = random_circuit(rng, num_vars=3)
    model = pc.compile(circuit, dtype=torch.float64)
    xs = all_assignments(circuit)
    ev = [xs[0][0], -1, -1]
    n = 20000
    s = model.sample(evidence=torch.tensor([ev] * n), seed=3).numpy()
    assert np.all(s[:, 0] == ev[0])
    cands = [a for a in xs if a[0] == ev[0]]
    probs = np.array([reference_prob(circuit, a) for a in cands])
    probs /= probs.sum()
    index = {tuple(a): k for k, a in enumerate(cands)}
    counts = np.bincount([index[tuple(r)] for r in s.tolist()], minlength=len(cands)).astype(float)
    ok, stat, df = _chi2_ok(counts, probs, n)
    assert ok, (stat, df)


def test_gaussian_mpe_and_samples():
    model = pc.compile("examples/mixture.pc", dtype=torch.float64)
    out = model.mpe(torch.tensor([[0.0, float("nan"), float("nan")]]))
    assert out[0, 0] == 0 and out[0, 1] == 2 and math.isclose(float(out[0, 2]), -1.0)
    s = model.sample(4000, seed=0)
    assert s.shape == (4000, 3) and torch.isfinite(s).all()
    # component 1 (weight 0.6) has mean 2: the real variable's sample mean is 0.4*-1 + 0.6*2 = 0.8
    assert abs(float(s[:, 2].mean()) - 0.8) < 0.08
