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


HAND = """var a : binary
var b : binary
la[2] = bernoulli(a, p=[0.1, 0.8])
lb[2] = bernoulli(b, p=[0.3, 0.6])
s[2] = sum(la, weights=[[0.3, 0.7], [0.6, 0.4]])
p = product(s, lb)
root = sum(p, weights=[[0.4, 0.6]])
"""


def test_the_released_noise_form_on_a_hand_checked_sum():
    """SparsePC's growth: one eps ~ N(1, sigma^2) per old edge (drawn sum by sum in node order,
    a negative one set to 0.1), copy 1 of the child column gets theta^eps and copy 2
    theta^(1/eps), the row is normalised, and both copies of the sum share the row."""
    import pccompile as pc

    circuit = pc.compile(HAND).to_circuit()
    s = next(n for n in circuit.nodes.values() if n.name == "s")
    grown = Grow(factor=2, noise=0.3, seed=7, form="released").run(circuit)
    w = np.asarray(grown.params[s.id]["weights"], np.float64)
    eps = np.random.default_rng(7).normal(1.0, 0.3, (2, 2))  # s is the first sum in node order
    eps[eps < 0] = 0.1
    theta = np.array([[0.3, 0.7], [0.6, 0.4]])
    raw = np.concatenate([theta**eps, theta ** (1 / eps)], axis=1)  # columns: la copy 1 (2), la copy 2 (2)
    want = raw / raw.sum(1, keepdims=True)
    np.testing.assert_allclose(w[:2], want, rtol=1e-6)
    np.testing.assert_allclose(w[2:], want, rtol=1e-6)  # the sum's second copy: the same row
    independent = Grow(factor=2, noise=0.3, seed=7, form="independent").run(circuit)
    w2 = np.asarray(independent.params[s.id]["weights"], np.float64)
    assert not np.allclose(w2[:2], w2[2:])  # ours draws every copy's weights afresh


@pytest.mark.parametrize("form", ["released", "independent"])
def test_both_noise_forms_are_exact_without_noise_and_change_the_distribution_with_it(form):
    import pccompile as pc

    model = pc.compile(HAND, dtype=torch.float64)
    rows = np.array([[a, b] for a in (0, 1) for b in (0, 1)])
    p = model(rows).exp().detach().numpy()
    for noise, same in ((0.0, True), (0.3, False)):
        grown = pc.compile(Grow(noise=noise, form=form, seed=3).run(model.to_circuit()), dtype=torch.float64)
        q = grown(rows).exp().detach().numpy()
        assert np.allclose(q, p, rtol=1e-6) == same
        assert q.sum() == pytest.approx(1.0, abs=1e-6)


def test_released_noise_never_underflows_a_live_edge(tmp_path):
    """theta^(1/eps) for a small eps underflows float32 (a round of prune-grow then saved a model
    with an infinite logit, and the run stopped): every kept edge stays positive, and the grown
    model saves and loads."""
    import pccompile as pc

    circuit = pc.compile("examples/digits.pc").to_circuit()
    grown = Grow(noise=3.0, seed=0, form="released").run(circuit)
    for n in grown.nodes.values():
        if n.kind == "sum" and n.tie is None:
            w = np.asarray(grown.params[n.id]["weights"])
            assert (w[grown.edge_mask(n)] > 0).all(), n.name
    model = pc.compile(grown)
    pc.save(model, tmp_path / "g.pcz")
    assert torch.isfinite(pc.load(tmp_path / "g.pcz")(np.zeros((2, 64), np.int64))).all()
