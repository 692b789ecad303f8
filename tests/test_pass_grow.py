"""`grow`: with noise 0 the distribution is unchanged exactly (dense, masked, pruned, tied,
row-indexed, Gaussian circuits), sizes grow by the factor with the root kept single, and noisy
growth stays a valid circuit."""

import numpy as np
import pytest
import torch
from helpers import random_circuit
from pccompile.ir import ArgumentError, verify
from pccompile.passes import Grow, InitParams, Prune

import pccompile as pc


def _same(a, b, circuit, rng, tol=1e-9):
    rows = [
        [
            float(rng.integers(v.domain.num_cats)) if v.domain.num_cats else float(rng.normal())
            for v in circuit.variables
        ]
        for _ in range(40)
    ]
    x = torch.tensor(rows, dtype=torch.float64)
    x[torch.rand(x.shape, generator=torch.Generator().manual_seed(3)) < 0.2] = float("nan")
    with torch.no_grad():
        torch.testing.assert_close(b(x), a(x), rtol=tol, atol=tol)


@pytest.mark.parametrize("kind", ["dense", "sparse", "tied", "gaussian", "outer"])
@pytest.mark.parametrize("factor", [2, 3])
def test_grow_without_noise_keeps_the_distribution(rng, kind, factor):
    opts = dict(sparse=kind == "sparse", tie=kind == "tied", gaussian=kind == "gaussian", outer=kind == "outer")
    circuit = random_circuit(rng, num_vars=4, **opts)
    grown = Grow(factor=factor, noise=0.0).run(circuit)
    verify(grown, require_params=True)
    for nid, n in circuit.nodes.items():
        assert grown.nodes[nid].size == (1 if nid == circuit.root else n.size * factor)
    # theta / 2 is exact in float32; theta / 3 is rounded once (the IR stores float32 weights)
    tol = 1e-9 if factor == 2 else 1e-6
    _same(pc.compile(circuit, dtype=torch.float64), pc.compile(grown, dtype=torch.float64), circuit, rng, tol)


def test_growing_a_pruned_circuit_keeps_its_sparsity_pattern(rng):
    circuit = random_circuit(rng, num_vars=4, sparse=False, tie=False)
    pruned = Prune(fraction=0.4, criterion="magnitude").run(circuit)
    grown = Grow(noise=0.0).run(pruned)
    s_pruned, s_grown = pruned.stats(), grown.stats()
    root_edges = sum(np.asarray(pruned.edge_mask(pruned.nodes[pruned.root])).sum() for _ in [0])
    assert s_grown["sum edges"] == 4 * (s_pruned["sum edges"] - root_edges) + 2 * root_edges
    _same(pc.compile(pruned, dtype=torch.float64), pc.compile(grown, dtype=torch.float64), circuit, rng)


def test_noisy_growth_is_valid_and_changes_the_weights(rng):
    circuit = random_circuit(rng, num_vars=4)
    a, b = Grow(noise=0.3, seed=1).run(circuit), Grow(noise=0.3, seed=2).run(circuit)
    verify(a, require_params=True)
    sums = [k for k, n in a.nodes.items() if n.kind == "sum" and n.tie is None]
    assert any(not np.allclose(a.params[k]["weights"], b.params[k]["weights"]) for k in sums)


def test_grow_errors_name_the_pass_and_option():
    from pccompile.passes import parse_pipeline

    with pytest.raises(ArgumentError, match="pass 'grow': option 'factor' expects an integer in 1..65,536, got '0'"):
        parse_pipeline("grow{factor=0}")
    with pytest.raises(ArgumentError, match="pass 'grow': option 'factor' expects an integer in 1..65,536, got 'two'"):
        parse_pipeline("grow{factor=two}")
    bare = pc.parse("var a : binary\nl[2] = bernoulli(a)\nroot = sum(l)\n")
    with pytest.raises(ArgumentError, match="pass 'grow' needs the parameters of node 'l'; run 'init' first"):
        Grow().run(bare)
    assert Grow().run(InitParams().run(bare)).nodes[bare.root].size == 1


@pytest.mark.parametrize("trial", range(12))
def test_prune_then_grow_keeps_random_circuits_valid(rng, trial):
    """Property: any criterion, fraction, scope and granularity of prune, then grow, on random
    circuits (masked, tied, indexed, Gaussian) gives a circuit that verifies with every parameter."""
    circuit = random_circuit(rng, num_vars=int(rng.integers(2, 6)), gaussian=bool(rng.random() < 0.3))
    crit = ["random", "magnitude"][trial % 2]
    scope = ["global", "node"][trial // 2 % 2]
    gran = ["edge", "block"][trial // 4 % 2]
    fraction = float(rng.choice([0.0, 0.3, 0.9, 1.0]))
    pruned = Prune(fraction=fraction, criterion=crit, scope=scope, granularity=gran, block=2, seed=trial).run(circuit)
    verify(pruned, require_params=True)
    grown = Grow(factor=int(rng.integers(1, 4)), noise=float(rng.choice([0.0, 0.2])), seed=trial).run(pruned)
    verify(grown, require_params=True)
    model = pc.compile(grown, dtype=torch.float64)
    rows = torch.tensor([[0.0 if v.domain.num_cats else 0.3 for v in circuit.variables]], dtype=torch.float64)
    with torch.no_grad():
        assert torch.isfinite(model(rows)).all()
