"""Mixtures of HCLTs: the k heaviest spanning trees against enumeration of all of them, the
mixture circuit against brute force, and trees=1 against the plain HCLT."""

import itertools

import numpy as np
import pytest
import torch
from helpers import all_assignments, reference_prob
from pccompile.ir import ArgumentError, Domain, Variable, verify
from pccompile.passes import InitParams

import pccompile as pc
from pccompile.structures import hclt
from pccompile.structures.chow_liu import chow_liu_trees, top_spanning_trees


def _all_spanning_trees(V):
    """Every labelled tree on V vertices, from its Pruefer sequence (V^(V-2) of them)."""
    for seq in itertools.product(range(V), repeat=V - 2):
        degree = [1] * V
        for s in seq:
            degree[s] += 1
        edges = []
        for s in seq:
            leaf = min(v for v in range(V) if degree[v] == 1)
            edges.append((leaf, s))
            degree[leaf] -= 1
            degree[s] -= 1
        u, w = [v for v in range(V) if degree[v] == 1]
        edges.append((u, w))
        yield edges


@pytest.mark.parametrize("V,k", [(4, 16), (5, 12), (6, 20)])
def test_top_spanning_trees_match_enumeration(rng, V, k):
    w = rng.random((V, V))
    w = w + w.T
    weight = lambda t: sum(w[a, b] for a, b in t)  # noqa: E731
    everything = sorted((weight(t) for t in _all_spanning_trees(V)), reverse=True)
    found = top_spanning_trees(w, k)
    assert len(found) == min(k, len(everything))
    assert len({frozenset(map(frozenset, t)) for t in found}) == len(found)  # all distinct
    for t in found:
        assert len(t) == V - 1
        assert len({frozenset(e) for e in t}) == V - 1
    np.testing.assert_allclose([weight(t) for t in found], everything[: len(found)], rtol=1e-12)


def test_tree_picks_start_at_the_chow_liu_tree(rng):
    x = (rng.random((400, 7)) < 0.4).astype(np.int64)
    x[:, 1] = x[:, 0] ^ (rng.random(400) < 0.1)
    parents = chow_liu_trees(x, 2, trees=3, candidates=9)
    assert len(parents) == 3
    edge_sets = [{frozenset((v, int(p))) for v, p in enumerate(par) if p >= 0} for par in parents]
    assert all(len(e) == 6 for e in edge_sets) and len({frozenset(e) for e in edge_sets}) == 3
    assert frozenset((0, 1)) in edge_sets[0]


def _check(root, variables, seed):
    circuit = InitParams(seed=seed).run(pc.build(root, variables))
    verify(circuit, require_params=True)
    model = pc.compile(circuit, dtype=torch.float64)
    xs = all_assignments(circuit)
    probs = np.exp(model(torch.tensor(xs)).detach().numpy())
    np.testing.assert_allclose(probs, [reference_prob(circuit, a) for a in xs], rtol=1e-9)
    np.testing.assert_allclose(probs.sum(), 1.0, rtol=1e-9)
    return circuit, probs


def test_mixture_of_hclts_matches_brute_force(rng):
    x = rng.integers(0, 3, size=(300, 5))
    x[:, 2] = np.where(rng.random(300) < 0.8, x[:, 1], x[:, 2])
    variables = [Variable(f"x{i}", Domain(3)) for i in range(5)]
    circuit, _ = _check(hclt(x, latents=2, num_cats=3, trees=3, tree_candidates=6), variables, seed=3)
    root = circuit.node(circuit.root)
    assert circuit.child_size(root) == 3 * 2 and len(root.children) == 3


def test_one_tree_is_the_plain_hclt(rng):
    x = (rng.random((300, 6)) < 0.3).astype(np.int64)
    variables = [Variable(f"x{i}", Domain(2)) for i in range(6)]
    plain, p_plain = _check(hclt(x, latents=3), variables, seed=5)
    mixed, p_mixed = _check(hclt(x, latents=3, trees=1), variables, seed=5)
    assert plain.stats() == mixed.stats()
    np.testing.assert_array_equal(p_plain, p_mixed)


def test_bad_tree_counts_are_refused(rng):
    x = (rng.random((50, 4)) < 0.5).astype(np.int64)
    with pytest.raises(ArgumentError, match="trees >= 1"):
        hclt(x, latents=2, trees=0)
    with pytest.raises(ArgumentError, match="tree_candidates >= trees"):
        hclt(x, latents=2, trees=4, tree_candidates=2)
