"""Fusion in the torch backend (codegen.fusion, torch_backend.children): products read only by
the next sum layer are formed inside it, from two factor vectors where they are an outer product.
Checked against enumeration, against the unfused executor (fuse=False), with buffers poisoned
so that a read of an unwritten row shows, and through the underflow path of each rule."""

import math

import numpy as np
import pytest
import torch
from helpers import all_assignments, reference_flows, reference_prob
from pccompile.codegen.fusion import outer_split
from pccompile.codegen.layers import ProgramTensors
from pccompile.codegen.layers.children import ChildFactors, ChildOuter
from pccompile.codegen.torch_backend import TorchExecutor
from pccompile.codegen.torch_backend import executor as executor_module
from pccompile.ir import ONE_ROW, Categorical, Domain, Gaussian, Variable

import pccompile as pc
from pccompile import builder
from pccompile.analysis.flows import batch_flows, edge_flows
from pccompile.structures import hclt, rat_spn


def _outer(a, b):
    return builder.multiply(a, b, index=(np.repeat(np.arange(a.size), b.size), np.tile(np.arange(b.size), a.size)))


def _model(root, variables, fuse, dtype=torch.float64, seed=0):
    return pc.compile(pc.build(root, variables), dtype=dtype, fuse=fuse, seed=seed)


@pytest.fixture
def poisoned(monkeypatch):
    """Every fresh value buffer starts as NaN except its padding rows, so a row read before it
    is written shows."""
    original = ProgramTensors.empty_mars

    def empty(self, B, dtype, device):
        mars = original(self, B, dtype, device)
        mars[2:] = float("nan")
        return mars

    monkeypatch.setattr(ProgramTensors, "empty_mars", empty)
    kept = TorchExecutor._workspace

    def workspace(self, *args):  # a kept buffer holds the last call's values: poison those too
        return kept(self, *args).fill_(float("nan"))

    monkeypatch.setattr(TorchExecutor, "_workspace", workspace)


# -- the analysis -------------------------------------------------------------------------------
def test_outer_split_recovers_the_factor_vectors(rng):
    g, Ka, Kb = 3, 4, 5
    a = rng.integers(2, 50, size=(g, Ka, 2))
    b = rng.integers(2, 50, size=(g, Kb, 3))
    comp = np.concatenate([np.repeat(a, Kb, axis=1), np.tile(b, (1, Ka, 1)), np.full((g, Ka * Kb, 1), ONE_ROW)], axis=2)
    comp = comp[:, :, rng.permutation(comp.shape[2])]
    split = outer_split(comp)
    assert split is not None
    sa, sb = split
    assert sa.shape[:2] == (g, Ka) and sb.shape[:2] == (g, Kb)
    values = rng.normal(size=60)
    values[ONE_ROW] = 0.0
    want = values[comp].sum(-1)  # [g, K]
    got = (values[sa].sum(-1)[:, :, None] + values[sb].sum(-1)[:, None, :]).reshape(g, -1)
    np.testing.assert_allclose(got, want)


def test_outer_split_refuses_children_that_are_no_outer_product(rng):
    comp = rng.integers(2, 50, size=(2, 6, 2))  # elementwise products: rows vary freely
    assert outer_split(comp) is None
    a, b = np.arange(2, 5), np.arange(10, 12)
    comp = np.stack([np.repeat(a, 2), np.tile(b, 3)], -1)[None].repeat(2, 0)
    assert outer_split(comp) is not None
    comp[1, 3, 1] = 40  # one group breaks the pattern
    assert outer_split(comp) is None


def test_rules_chosen_per_structure():
    cats = [3] * 8
    model = _model(rat_spn(8, cats, depth=2, num_sums=3, num_inputs=2), 8, fuse=True)
    ex = model.executor
    kinds = {type(s) for s in ex.fused.sources.values()}
    assert ChildOuter in kinds
    assert ex.fused.num_rows < ex.tensors.num_rows  # the outer products' rows are not stored
    x = np.random.default_rng(0).integers(0, 2, size=(50, 6))
    ex = _model(hclt(x, latents=3), 6, fuse=True).executor
    assert ChildFactors in {type(s) for s in ex.fused.sources.values()}
    assert not any(kind == "product" for kind, _ in ex.fused.layer_specs)  # every HCLT product fused
    ex = _model(hclt(x, latents=3), 6, fuse=False).executor
    assert ex.fused is ex.tensors


# -- against enumeration ----------------------------------------------------------------------
@pytest.mark.parametrize("structure", ["rat_spn", "hclt"])
def test_fused_likelihoods_and_flows_match_enumeration(structure, rng, poisoned):
    if structure == "rat_spn":
        cats = [2, 3, 2, 3]
        root = rat_spn(4, cats, depth=2, repetitions=2, num_sums=3, num_inputs=2, seed=int(rng.integers(100)))
    else:
        cats = [3, 2, 3, 2]
        root = hclt(rng.integers(0, 2, size=(40, 4)), latents=3, num_cats=cats)
    variables = [Variable(f"x{i}", Domain(k)) for i, k in enumerate(cats)]
    circuit = _model(root, variables, fuse=True, seed=int(rng.integers(100))).to_circuit()  # parameters drawn
    model = pc.compile(circuit, dtype=torch.float64, fuse=True)
    assert model.executor.fused.fused
    rows = all_assignments(circuit)
    with torch.no_grad():
        ll = model(torch.tensor(rows)).numpy()
    want = np.log([reference_prob(circuit, r) for r in rows])
    np.testing.assert_allclose(ll, want, rtol=1e-10)
    assert math.isclose(np.exp(ll).sum(), 1.0, rel_tol=1e-9)
    data = [rows[i] for i in rng.integers(0, len(rows), size=7)]
    got = edge_flows(model, np.array(data))
    for nid, f in got.items():
        ref = sum(reference_flows(circuit, r)[nid] for r in data)
        np.testing.assert_allclose(f, ref, rtol=1e-8, atol=1e-12)


# -- against the unfused executor on larger random circuits -----------------------------------
def _larger(structure, rng):
    if structure == "rat_spn":
        V, cats = 16, 3
        return rat_spn(V, cats, depth=3, repetitions=3, num_sums=5, num_inputs=4, seed=1), V, cats
    V, cats = 14, 4
    return hclt(rng.integers(0, cats, size=(200, V)), latents=6, num_cats=cats), V, cats


@pytest.mark.parametrize("chunk", [None, 2048, 64])  # one piece; pieces of groups; of samples
@pytest.mark.parametrize("structure", ["rat_spn", "hclt"])
def test_fused_equals_unfused_on_values_flows_and_gradients(structure, chunk, rng, poisoned, monkeypatch):
    root, V, cats = _larger(structure, rng)
    variables = [Variable(f"x{i}", Domain(cats)) for i in range(V)]
    fused, plain = (_model(root, variables, fuse=f, dtype=torch.float32, seed=3) for f in (True, False))
    x = torch.as_tensor(rng.integers(0, cats, size=(33, V)))
    x[rng.random(x.shape) < 0.1] = -1  # some missing values
    lp = plain(x)
    lp.sum().backward()
    sp = batch_flows(plain, x.numpy())
    if chunk is not None:  # the fused side runs in chunks, the reference in one piece
        monkeypatch.setattr(executor_module, "PIECE_BUDGET", chunk)
        assert len(executor_module._chunks((64, 1, 6), torch.empty(1, 33))) > 1
    lf = fused(x)
    torch.testing.assert_close(lf, lp, rtol=1e-5, atol=1e-4)
    lf.sum().backward()
    for a, b in zip(fused.parameters(), plain.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5)
    sf = batch_flows(fused, x.numpy())
    torch.testing.assert_close(sf.sum_flows, sp.sum_flows, rtol=1e-4, atol=1e-5)
    for a, b in zip(sf.inputs, sp.inputs):
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


# -- the underflow path of each fused rule ----------------------------------------------------
@pytest.mark.parametrize("chunk", [None, 1])
@pytest.mark.parametrize("rule", ["outer", "factors"])
def test_underflowing_fused_sums_are_recomputed_exactly(rule, chunk, poisoned, monkeypatch):
    # Sum row 0 puts all its weight on the child that is 10000 nats below the group max: the
    # factored product underflows and the exact path must give the true value and gradients.
    a = builder.inputs(0, 2, Gaussian(), mean=[0.0, 100.0], std=[1.0, 1.0])
    b = builder.inputs(1, 2, Gaussian(), mean=[0.0, 100.0], std=[1.0, 1.0])
    if rule == "outer":
        prod, w = _outer(a, b), [[1, 0, 0, 0], [0, 0, 0, 1]]
    else:
        prod, w = builder.multiply(a, b), [[1, 0], [0, 1]]
    s = builder.summate(prod, size=2, weights=w)
    root = builder.summate(s, size=1, weights=[[1, 0]])
    variables = [Variable("h0", Domain(None)), Variable("h1", Domain(None))]
    fused, plain = (_model(root, variables, fuse=f) for f in (True, False))
    kind = ChildOuter if rule == "outer" else ChildFactors
    assert any(isinstance(c, kind) for c in fused.executor.fused.sources.values())
    x = torch.tensor([[0.0, 100.0]] * 17 + [[100.0, 100.0]] * 2, dtype=torch.float64)  # the last two underflow
    if chunk is not None:
        monkeypatch.setattr(executor_module, "PIECE_BUDGET", chunk)  # one group, 16 samples a piece
    out = fused(x)[-2:]
    np.testing.assert_allclose(out.detach().numpy(), -(100.0**2) - math.log(2 * math.pi), rtol=1e-9)
    out.sum().backward()
    plain(x)[-2:].sum().backward()
    for p, q in zip(fused.parameters(), plain.parameters()):
        assert torch.isfinite(p.grad).all()
        torch.testing.assert_close(p.grad, q.grad)
    means = fused.inputs[0].mean.grad
    assert sorted(means.tolist()) == pytest.approx([0.0, 0.0, 200.0, 200.0])  # d/dmean at the mean-0 units
    torch.testing.assert_close(batch_flows(fused, x.numpy()).sum_flows, batch_flows(plain, x.numpy()).sum_flows)


def test_categorical_outer_products_compile_to_the_fused_rule():
    a = builder.inputs(0, 3, Categorical(4))
    b = builder.inputs(1, 2, Categorical(4))
    root = builder.summate(_outer(a, b), size=1)
    model = _model(root, [Variable("a", Domain(4)), Variable("b", Domain(4))], fuse=True)
    (src,) = [s for s in model.executor.fused.sources.values() if isinstance(s, ChildOuter)]
    assert src.a_rows.shape[1] * src.b_rows.shape[1] == 6
    rows = torch.tensor(all_assignments(model.to_circuit()))
    with torch.no_grad():
        assert math.isclose(float(model(rows).exp().sum()), 1.0, rel_tol=1e-9)


def test_kept_buffers_give_the_results_of_fresh_ones(rng):
    """reuse=True (the likelihood and E-step paths) hands out one kept buffer per purpose; every
    call must still see only its own batch, whatever ran before, at any batch size."""
    root, V, cats = _larger("rat_spn", rng)
    model = _model(root, [Variable(f"x{i}", Domain(cats)) for i in range(V)], fuse=True, dtype=torch.float32)
    ex = model.executor
    logw = model.sum_log_weights(padded=True)
    ptrs = []
    for B in (17, 17, 5, 17):
        x = torch.as_tensor(rng.integers(0, cats, size=(B, V)))
        x_int, x_real = model.encode(x)
        with torch.no_grad():
            fresh = model.node_values(x_int, x_real, logw)
            kept = model.node_values(x_int, x_real, logw, reuse=True)
            ptrs.append(kept.data_ptr())
            assert ex._workspaces["values"].data_ptr() == ptrs[-1]
            torch.testing.assert_close(kept, fresh)
            grad = torch.ones(B)
            f_fresh, p_fresh = ex.backward_flows(fresh, logw, grad)
            f_kept, p_kept = ex.backward_flows(kept, logw, grad, reuse=True)
            torch.testing.assert_close(f_kept, f_fresh)
            torch.testing.assert_close(p_kept, p_fresh)
            torch.testing.assert_close(model(x), fresh[ex.out_row])
    assert ptrs[0] == ptrs[1]  # the same shape twice: the same buffer
