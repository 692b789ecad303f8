"""Flows (the E-step) against autograd; EM monotonicity and fixed points."""

import numpy as np
import pytest
import torch
from helpers import all_assignments, random_circuit
from test_gradients import naive_log_likelihood

import pccompile as pc
from pccompile.analysis.flows import batch_flows, dataset_flows, edge_flows
from pccompile.learn import em_update, mean_log_likelihood


def _data(circuit, rng, n):
    return np.array(
        [
            [int(rng.integers(v.domain.num_cats)) if v.domain.num_cats else 0 for v in circuit.variables]
            for _ in range(n)
        ]
    )


@pytest.mark.parametrize("trial", range(6))
def test_edge_flows_are_gradients_wrt_log_weights(rng, trial):
    """F_{n,c}(x) = d log p(x) / d log theta_{c|n}, with theta treated as free (unnormalised)."""
    circuit = random_circuit(rng, num_vars=int(rng.integers(2, 5)))
    model = pc.compile(circuit, dtype=torch.float64)
    x = _data(circuit, rng, 9)
    flows = batch_flows(model, x).sum_flows
    logw = model.sum_log_weights().detach().clone().requires_grad_(True)
    model.sum_log_weights = lambda: logw  # evaluate the reference at free log-weights
    naive_log_likelihood(model, torch.as_tensor(x)).sum().backward()
    torch.testing.assert_close(flows, logw.grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("trial", range(6))
def test_flow_invariants(rng, trial):
    circuit = random_circuit(rng, num_vars=int(rng.integers(2, 5)))
    model = pc.compile(circuit, dtype=torch.float64)
    for row in _data(circuit, rng, 5):  # per sample: 0 <= F <= 1 and sum_c F_{n,c} = F_n
        s = batch_flows(model, row[None])
        f = s.sum_flows
        assert torch.all(f >= -1e-12) and torch.all(f <= 1 + 1e-9)
        node = model.sum_rows.row_totals(f)
        assert torch.all(node <= 1 + 1e-9)
        # input flows of each variable sum to 1 (every sample reaches each variable exactly once in total)
        per_var = np.zeros(circuit.num_vars)
        for part, st in zip(model.program.input_partitions, s.inputs):
            np.add.at(per_var, part.vars, st["counts"].sum(1).numpy() + st["missing"].numpy())
        np.testing.assert_allclose(per_var, 1.0, rtol=1e-9)
    # edge_flows maps flows back onto IR nodes, zero off the mask
    ef = edge_flows(model, _data(circuit, rng, 20))
    for nid, f in ef.items():
        assert np.all(f[~circuit.edge_mask(circuit.nodes[nid])] == 0)
    root = circuit.param_source(circuit.nodes[circuit.root]).id
    if root in ef:
        np.testing.assert_allclose(ef[root].sum(), 20.0, rtol=1e-9)


@pytest.mark.parametrize("trial", range(6))
def test_full_batch_em_never_decreases_training_likelihood(rng, trial):
    circuit = random_circuit(rng, num_vars=int(rng.integers(2, 5)), gaussian=trial % 3 == 0)
    model = pc.compile(circuit, dtype=torch.float64)
    data = model.sample(300, seed=trial).numpy()
    model = pc.compile(pc.print_circuit(circuit, params=False), dtype=torch.float64, seed=trial + 1)
    prev = mean_log_likelihood(model, data)
    for _ in range(8):
        em_update(model, dataset_flows(model, data), step_size=1.0, pseudocount=0.0)
        cur = mean_log_likelihood(model, data)
        assert cur >= prev - 1e-9, (prev, cur)
        prev = cur


def test_em_recovers_a_mixture_and_respects_pseudocount():
    src = """var a, b : binary
    la[2] = bernoulli(a, p=[0.9, 0.2])
    lb[2] = bernoulli(b, p=[0.8, 0.1])
    p = product(la, lb)
    root = sum(p, weights=[[0.3, 0.7]])"""
    truth = pc.compile(src, dtype=torch.float64)
    x = truth.sample(20000, seed=0).numpy()
    model = pc.compile(pc.print_circuit(truth.circuit, params=False), dtype=torch.float64, seed=1)
    for _ in range(200):
        em_update(model, dataset_flows(model, x, batch_size=20000), step_size=1.0, pseudocount=0.0)
    # the joint of two binary variables is identified: compare all four probabilities
    grid = torch.tensor(all_assignments(truth.circuit))
    torch.testing.assert_close(model(grid).exp(), truth(grid).exp(), atol=0.01, rtol=0)
    # a huge pseudocount pulls every distribution towards uniform
    em_update(model, dataset_flows(model, x[:10]), step_size=1.0, pseudocount=1e9)
    torch.testing.assert_close(model(grid).exp(), torch.full((4,), 0.25, dtype=torch.float64), atol=1e-6, rtol=0)


def test_input_counts_by_run_scatter_match_the_general_scatter(rng):
    """The scatter over runs (rows in runs of L per variable) and the general scatter
    give the same statistics, equal to a direct count; -1 values count as missing."""
    from pccompile.ir import family

    L, nv, B, k = 3, 4, 50, 5
    from pccompile.ir import InputPartition

    vars_ = np.repeat(rng.permutation(6)[:nv], L)
    part = InputPartition("categorical", k, 2, vars_)
    x = torch.as_tensor(rng.integers(-1, k, (B, 6)))
    f = torch.rand(nv * L, B, dtype=torch.float64)
    assert part.run_length == L  # the scatter over runs
    assert InputPartition("categorical", k, 2, np.array([0, 0, 1, 1, 1])).run_length is None
    assert InputPartition("categorical", k, 2, np.array([2, 2, 5, 5])).run_length == 2
    fast = family("categorical").stats(part, {}, torch.as_tensor(vars_), f, x, None)
    expect = np.zeros((nv * L, k))
    miss = np.zeros(nv * L)
    for r in range(nv * L):
        for b in range(B):
            v = x[b, vars_[r]].item()
            if v < 0:
                miss[r] += f[r, b].item()
            else:
                expect[r, v] += f[r, b].item()
    np.testing.assert_allclose(fast["counts"].numpy(), expect, rtol=1e-12)
    np.testing.assert_allclose(fast["missing"].numpy(), miss, rtol=1e-12)
    general = InputPartition("categorical", k, 2, vars_)
    general.__dict__["run_length"] = None  # as if the rows were in any order: the scatter
    slow = family("categorical").stats(general, {}, torch.as_tensor(vars_), f, x, None)
    np.testing.assert_allclose(slow["counts"].numpy(), expect, rtol=1e-12)
    np.testing.assert_allclose(slow["missing"].numpy(), miss, rtol=1e-12)
