"""Structures: HCLT recovers a known tree; RAT-SPN, PD, HMM verify and match brute force."""

import math

import numpy as np
import pytest
import torch
from helpers import all_assignments, reference_prob
from pccompile.ir import Domain, Variable, verify
from pccompile.passes import InitParams

import pccompile as pc
from pccompile.structures import chow_liu_tree, hclt, hclt_from_tree, hmm, pd, rat_spn


def _sample_tree(rng, parent, n, flip=0.1):
    """Binary data from a tree Bayesian network: each child copies its parent, flipped w.p. `flip`."""
    V = len(parent)
    order = [int(np.flatnonzero(parent < 0)[0])]
    kids = {v: [c for c in range(V) if parent[c] == v] for v in range(V)}
    for u in order:
        order.extend(kids[u])
    x = np.zeros((n, V), dtype=np.int64)
    for v in order:
        if parent[v] < 0:
            x[:, v] = rng.random(n) < 0.5
        else:
            x[:, v] = x[:, parent[v]] ^ (rng.random(n) < flip)
    return x


def _edges(parent):
    return {frozenset((v, int(p))) for v, p in enumerate(parent) if p >= 0}


@pytest.mark.parametrize("trial", range(4))
def test_chow_liu_recovers_the_generating_tree(rng, trial):
    V = int(rng.integers(5, 12))
    parent = np.full(V, -1)
    for v in range(1, V):
        parent[v] = int(rng.integers(v))  # a random tree rooted at 0
    x = _sample_tree(rng, parent, 20000, flip=float(rng.uniform(0.05, 0.2)))
    root, learned = chow_liu_tree(x, 2)
    assert _edges(learned) == _edges(parent)
    assert learned[root] == -1 and (learned >= 0).sum() == V - 1


def _tiny_check(root, variables, seed=0):
    circuit = InitParams(seed=seed).run(pc.build(root, variables))
    verify(circuit, require_params=True)
    model = pc.compile(circuit, dtype=torch.float64)
    xs = all_assignments(circuit)
    lls = model(torch.tensor(xs)).detach().numpy()
    ref = np.array([reference_prob(circuit, a) for a in xs])
    np.testing.assert_allclose(np.exp(lls), ref, rtol=1e-9)
    assert math.isclose(float(np.exp(lls).sum()), 1.0, rel_tol=1e-9)
    return circuit


def test_hclt_structure_matches_brute_force(rng):
    parent = np.array([-1, 0, 0, 1, 1])
    root = hclt_from_tree(parent, [2, 3, 2, 2, 3], latents=3)
    c = _tiny_check(root, [Variable(f"x{i}", Domain(k)) for i, k in enumerate([2, 3, 2, 2, 3])])
    # one latent sum vector per tree edge plus the root: h^2 weights per edge
    assert c.stats()["sum edges"] == 4 * 9 + 3
    x = _sample_tree(rng, np.array([-1, 0, 1, 2]), 500)
    _tiny_check(hclt(x, latents=2), [Variable(f"x{i}", Domain(2)) for i in range(4)])


@pytest.mark.parametrize("depth,reps", [(1, 1), (1, 3), (2, 2)])
def test_rat_spn_matches_brute_force(depth, reps):
    root = rat_spn(5, 3, depth=depth, repetitions=reps, num_sums=2, num_inputs=2, seed=depth)
    _tiny_check(root, [Variable(f"x{i}", Domain(3)) for i in range(5)])


@pytest.mark.parametrize("h,w,delta", [(2, 2, 1), (2, 3, 1), (3, 2, 2)])
def test_pd_matches_brute_force(h, w, delta):
    root = pd(h, w, 2, latents=2, delta=delta)
    _tiny_check(root, [Variable(f"x{i}", Domain(2)) for i in range(h * w)])


@pytest.mark.parametrize("homogeneous", [True, False])
def test_hmm_matches_forward_algorithm(homogeneous):
    T, H, K = 4, 2, 3
    root = hmm(T, H, K, homogeneous=homogeneous)
    c = _tiny_check(root, [Variable(f"x{i}", Domain(K)) for i in range(T)])
    ties = [n for n in c.nodes.values() if getattr(n, "tie", None) is not None]
    assert len(ties) == (T - 2 if homogeneous else 0)
    # an independent forward algorithm with the circuit's parameters
    model = pc.compile(c, dtype=torch.float64)

    def rows(a):
        return np.asarray(a, np.float64) / np.asarray(a, np.float64).sum(-1, keepdims=True)

    emit = {n.var: rows(c.params[i]["probs"]) for i, n in c.nodes.items() if n.kind == "input"}
    sums = [n for n in c.nodes.values() if n.kind == "sum" and n.size == H]
    A = rows(c.params[c.param_source(sums[0]).id]["weights"])
    pi = rows(c.params[c.root]["weights"])[0]
    for x in all_assignments(c)[:10]:
        if homogeneous:
            beta = emit[T - 1][:, x[T - 1]]
            for t in range(T - 2, -1, -1):
                beta = emit[t][:, x[t]] * (A @ beta)
            assert math.isclose(float(model(torch.tensor([x]))[0].detach().exp()), float(pi @ beta), rel_tol=1e-9)


def test_templates_in_the_dsl(tmp_path):
    x = _sample_tree(np.random.default_rng(0), np.array([-1, 0, 1, 1]), 300)
    np.save(tmp_path / "train.npy", x)
    for body in (
        'root = hclt(x, latents=3, data="train.npy")',
        "root = rat_spn(x, depth=1, repetitions=2)",
        "root = hmm(x, latents=2)",
        "image = [2, 2]\nroot = pd(x, latents=2, delta=1)",
    ):
        f = tmp_path / "s.pc"
        f.write_text("var x[4] : binary\n" + body + "\n")
        model = pc.compile(f, dtype=torch.float64)
        grid = torch.tensor(all_assignments(model.circuit))
        assert math.isclose(float(model(grid).detach().exp().sum()), 1.0, rel_tol=1e-9)
    f.write_text('var x[4] : binary\nroot = hclt(x, latents=3, data="missing.npy")\n')
    with pytest.raises(pc.DSLSemanticError, match="s.pc:2:8: hclt data"):
        pc.compile(f)
    f.write_text("var x[4] : binary\nroot = pd(x, latents=2)\n")
    with pytest.raises(pc.DSLSemanticError, match="pd needs shape"):
        pc.compile(f)


def test_mutual_information_matches_brute_force(rng):
    """Mixed cardinalities and missing values, against a direct count per pair."""
    from pccompile.structures import mutual_information

    cats = np.array([2, 3, 5, 2])
    x = np.stack([rng.integers(0, k, 300) for k in cats], 1)
    x[:, 2] = (x[:, 0] + x[:, 2]) % 5  # some dependence
    x[rng.random(x.shape) < 0.1] = -1
    pc_ = 0.3
    mi = mutual_information(x, cats, pseudocount=pc_, device="cpu")
    for i in range(4):
        for j in range(4):
            if i == j:
                assert mi[i, j] == 0
                continue
            both = (x[:, i] >= 0) & (x[:, j] >= 0)
            p = np.full((cats[i], cats[j]), pc_ / (cats[i] * cats[j]))
            for a, b in zip(x[both, i], x[both, j]):
                p[a, b] += 1
            p /= p.sum()
            expect = (p * np.log(p / p.sum(1, keepdims=True) / p.sum(0, keepdims=True))).sum()
            assert abs(mi[i, j] - expect) < 1e-10
    assert mi[0, 2] > 5 * mi[0, 1]


def test_the_released_hclt_shape_has_no_sum_on_a_leaf():
    """leaf_sums=False is PyJuice's and Juice's HCLT: a tree leaf's input goes straight into its
    parent's product, so a 784-variable tree at latents 32 has (inner nodes - 1) x 32^2 + 32 sum
    weights (ours: a 32 x 32 sum on every one of the 783 edges). On a small tree both shapes are
    distributions (brute force), and LVD's region map covers every latent once."""
    from pccompile.lvd import region_map
    from pccompile.structures import hclt_from_tree

    rng = np.random.default_rng(0)
    parent = np.array([-1] + [int(rng.integers(0, v)) for v in range(1, 784)])
    inner = len(set(parent[parent >= 0].tolist()))
    for leaf_sums, want in ((False, (inner - 1) * 32 * 32 + 32), (True, 783 * 32 * 32 + 32)):
        c = pc.build(hclt_from_tree(parent, 256, 32, leaf_sums=leaf_sums))
        weights = sum(n.size * sum(c.nodes[k].size for k in n.children) for n in c.nodes.values() if n.kind == "sum")
        assert weights == want
    small = np.array([-1, 0, 0, 1, 1])
    model = pc.compile(pc.build(hclt_from_tree(small, 3, 4, leaf_sums=False)), passes="init", dtype=torch.float64)
    rows = np.array(np.meshgrid(*[range(3)] * 5, indexing="ij")).reshape(5, -1).T
    assert float(model(rows).detach().exp().sum()) == pytest.approx(1.0, abs=1e-9)
    rmap = region_map(model.circuit)
    sums = [n.id for n in model.circuit.nodes.values() if n.kind == "sum" and n.id != model.circuit.root]
    assert sorted(v for lat in rmap.latents for v in lat.vectors if v in sums) == sorted(sums)
    assert {lat.name for lat in rmap.latents} >= {"Z[0]", "Z[1]"}  # the inner nodes' latents


def test_patch_hclt_needs_an_image_and_names_it():
    from pccompile.ir import DSLSemanticError

    text = 'var px[16] : categorical(3)\nroot = patch_hclt(px, latents=2, data="builtin:digits")\n'
    with pytest.raises(
        DSLSemanticError, match=r"patch_hclt needs an image = \[height, width\] setting covering its 16"
    ):
        pc.compile(text)


def test_patch_hclt_refuses_a_patch_larger_than_the_image():
    from pccompile.ir import ArgumentError

    from pccompile.structures.patch_hclt import patch_hclt

    with pytest.raises(ArgumentError, match=r"patch_hclt needs a patch side in 1..4, got 5"):
        patch_hclt(np.zeros((10, 16), np.int64), (4, 4), 5, 2, 3)
    with pytest.raises(ArgumentError, match=r"patch_hclt data must be \[rows, 16\] for an image of 4 x 4"):
        patch_hclt(np.zeros((10, 15), np.int64), (4, 4), 2, 2, 3)
