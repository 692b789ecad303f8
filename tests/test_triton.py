"""The Triton backend under TRITON_INTERPRET=1 against the torch backend (small circuits: the
interpreter is slow). Buffers are poisoned with NaN before each run, so a row read before it is
written, or never written, shows up.

On a GPU machine, `PCC_TEST_DEVICE=cuda pytest tests/test_triton.py` runs the same comparisons
with the compiled kernels on the GPU (the torch reference stays on the CPU)."""

import os

DEVICE = os.environ.get("PCC_TEST_DEVICE", "cpu")
if DEVICE == "cpu":
    os.environ["TRITON_INTERPRET"] = "1"

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import UNDERFLOW_CIRCUIT, ZERO_EVIDENCE_CIRCUIT, all_assignments, random_circuit

import pccompile as pc
from pccompile.analysis.flows import batch_flows
from pccompile.learn import em_update
from pccompile.structures import hclt_from_tree, hmm

pytest.importorskip("triton")
warnings.filterwarnings("ignore", category=RuntimeWarning)  # interpreter: numpy on masked lanes
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")
GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("PCCOMPILE_CACHE", str(tmp_path_factory.getbasetemp() / "kernels"))


def _pair(circuit, **triton):
    ref = pc.compile(circuit)
    # on a GPU the matrix units would read fp32 operands as tf32 (about 1e-3 relative): compare exactly
    precision = {"precision": "ieee"} if DEVICE != "cpu" else {}
    tri = pc.compile(circuit, backend="triton", triton={"block_b": 16, **precision, **triton}, device=DEVICE)
    tri.executor.poison = True
    return ref, tri


def _data(circuit, rng, n):
    rows = [
        [
            float(rng.integers(v.domain.num_cats)) if v.domain.num_cats else float(rng.normal())
            for v in circuit.variables
        ]
        for _ in range(n)
    ]
    x = torch.tensor(rows)
    x[torch.rand(x.shape, generator=torch.Generator().manual_seed(n)) < 0.15] = float("nan")  # missing
    return x


def _compare(ref, tri, x):
    a, b = ref(x), tri(x)
    assert not torch.isnan(b).any()
    torch.testing.assert_close(b.cpu(), a, rtol=1e-4, atol=1e-4)
    g = torch.randn(x.shape[0])
    (a * g).sum().backward()
    (b * g.to(b.device)).sum().backward()
    for p, q in zip(ref.parameters(), tri.parameters()):
        assert not torch.isnan(q.grad).any()
        torch.testing.assert_close(q.grad.cpu(), p.grad, rtol=1e-3, atol=1e-4)
    with torch.no_grad():  # without autograd the input kernels write the input rows in place
        c = tri(x)
    assert not torch.isnan(c).any()
    torch.testing.assert_close(c.cpu(), a.detach(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", ["dense", "sparse", "tied", "gaussian", "deep"])
def test_random_circuits_match_torch(rng, kind):
    opts = dict(num_vars=4, sparse=kind == "sparse", tie=kind == "tied", gaussian=kind == "gaussian")
    if kind == "deep":
        opts.update(num_vars=7)
    circuit = random_circuit(rng, **opts)
    while kind == "sparse" and not any(getattr(n, "mask", None) is not None for n in circuit.nodes.values()):
        circuit = random_circuit(rng, **opts)
    ref, tri = _pair(circuit)
    if kind == "sparse":  # masked sums use explicit weight-id tables
        assert any(L.kind == "sum" and not L.meta["dense"] for L in tri.executor.emitted.launches)
    _compare(ref, tri, _data(circuit, rng, 20))


@pytest.mark.parametrize("fuse", [True, False])
def test_dot_path_and_fusion_match_torch(rng, fuse):
    # latents 16: groups of 16 nodes use tl.dot; products feed sums and are fused away
    root = hclt_from_tree(np.array([-1, 0, 0, 1]), [3, 2, 2, 3], latents=16)
    circuit = pc.to_circuit(root)
    ref, tri = _pair(circuit, fuse=fuse)
    launches = tri.executor.emitted.launches
    assert any(L.kind == "sum" and L.meta["dot"] and L.meta["dense"] for L in launches)
    assert any(L.kind == "sum" and L.meta["fused"] for L in launches) == fuse
    x = _data(circuit, rng, 24)
    _compare(ref, tri, x)
    em_update(ref, batch_flows(ref, x), 0.3, 0.1)  # dense blocks: the fused em_dense kernel
    em_update(tri, batch_flows(tri, x), 0.3, 0.1)
    torch.testing.assert_close(tri.sum_logits.cpu(), ref.sum_logits, rtol=1e-4, atol=1e-4)
    # rows of fused-away products are not allocated in a normal pass, only in a complete one
    em = tri.executor.emitted
    products = sum(p.rows.size for lay in tri.program.layers if lay.kind == "product" for p in lay.partitions)
    groups = em.num_rows - (tri.program.num_rows - (products if fuse else 0))
    assert groups == sum(L.meta["g"] for L in em.launches if L.kind == "sum")
    assert em.num_rows_complete == tri.program.num_rows + groups
    with torch.no_grad():
        assert tri.node_values(*tri.encode(x)).shape[0] == em.num_rows
    q = x.clone()
    q[:, ::2] = float("nan")
    torch.testing.assert_close(tri.mpe(q).cpu(), ref.mpe(q))  # decoding reads the complete pass


@pytest.mark.parametrize("combined", [True, False])
def test_several_node_and_child_tiles_per_group_match_torch(rng, combined):
    # latents 32 with 16-wide tiles: each group spans two G tiles (only one saves the group max)
    # and two K tiles; parameter flows in the child-flow launch (small tiles) or in their own
    # kernel, one program per weight tile
    root = hclt_from_tree(np.array([-1, 0, 1]), [3, 2, 3], latents=32)
    circuit = pc.to_circuit(root)
    ref, tri = _pair(circuit, max_block_g=16, max_block_k=16, combined_backward_tile=1024 if combined else 0)
    assert any(
        L.kind == "sum" and L.meta["NGB"] == 2 and L.meta["K"] == 32 and L.meta["dot"]
        for L in tri.executor.emitted.launches
    )
    assert ("sum_bwd_params[" in tri.executor.emitted.source) != combined
    x = _data(circuit, rng, 40)  # three batch tiles of 16, the last one partial
    _compare(ref, tri, x)
    fr, ft = batch_flows(ref, x), batch_flows(tri, x)
    torch.testing.assert_close(ft.sum_flows.cpu(), fr.sum_flows, rtol=1e-3, atol=1e-4)


def test_tied_hmm_and_batch_sizes_without_recompiling(rng):
    circuit = pc.to_circuit(hmm(5, 4, 3))
    ref, tri = _pair(circuit)
    module = tri.executor.kernels
    for n in (1, 7, 33):  # any batch size, same emitted module
        _compare(ref, tri, _data(circuit, rng, n))
        ref.zero_grad()
        tri.zero_grad()
    assert tri.executor.kernels is module


def test_zero_probability_evidence_is_minus_inf_without_nan():
    src = ZERO_EVIDENCE_CIRCUIT
    ref, tri = _pair(src)
    x = torch.tensor([[1, 0], [0, 1], [1, 1]])
    out = tri(x).cpu()
    assert out[0] == float("-inf") and out[2] == float("-inf") and torch.isfinite(out[1])
    torch.testing.assert_close(out, ref(x))
    s = batch_flows(tri, x)
    assert not torch.isnan(s.sum_flows).any()


def test_flows_em_mpe_and_sampling_through_kernels(rng):
    circuit = random_circuit(rng, num_vars=4, sparse=True)
    ref, tri = _pair(circuit)
    x = _data(circuit, rng, 16)
    fr, ft = batch_flows(ref, x), batch_flows(tri, x)
    torch.testing.assert_close(ft.sum_flows.cpu(), fr.sum_flows, rtol=1e-3, atol=1e-4)
    em_update(ref, fr, 0.5, 0.1)
    em_update(tri, ft, 0.5, 0.1)
    torch.testing.assert_close(tri.sum_logits.cpu(), ref.sum_logits, rtol=1e-3, atol=1e-4)
    q = torch.tensor([[v if rng.random() < 0.4 else -1 for v in a] for a in all_assignments(circuit)[:8]])
    torch.testing.assert_close(tri.mpe(q).cpu(), ref.mpe(q))
    s = tri.sample(8, seed=1)
    assert s.shape == (8, 4) and (s >= 0).all()


def test_softened_and_entropy_regularised_em_through_kernels(rng):
    """The regularisers (learn.regularize) use the executor's plain interface: on the Triton
    backend one regularised EM step gives the torch backend's parameters (random circuit with
    every input family, missing values included)."""
    from pccompile.learn.em import em_step
    from pccompile.learn.regularize import Regularization, value_frequencies

    circuit = random_circuit(rng, num_vars=4, sparse=True)
    ref, tri = _pair(circuit)
    x = _data(circuit, rng, 16)
    cats = [v.domain.num_cats for v in circuit.variables]
    reg = Regularization(0.1, 0.05, value_frequencies(np.nan_to_num(x.numpy(), nan=-1), cats))
    la = em_step(ref, *ref.encode(x), 0.7, 0.1, reg=reg)
    lb = em_step(tri, *tri.encode(x), 0.7, 0.1, reg=reg)
    torch.testing.assert_close(lb.cpu(), la, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(tri.sum_logits.cpu(), ref.sum_logits, rtol=1e-3, atol=1e-4)
    for a, b in zip(ref.inputs.parameters(), tri.inputs.parameters()):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-3, atol=1e-4)


def test_emitted_source_is_stable():
    """Golden text: any change to the emitter shows up here (regenerate with PCC_UPDATE_GOLDEN=1)."""
    from pccompile.codegen.triton import TritonOptions, emit

    model = pc.compile("examples/mixture.pc")
    hmm_model = pc.compile(pc.to_circuit(hmm(3, 2, 2)))
    text = emit(model.program, TritonOptions()).source + emit(hmm_model.program, TritonOptions()).source
    golden = GOLDEN / "emitted_mixture_hmm.py.txt"
    if os.environ.get("PCC_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    old, new = _kernels(golden.read_text()), _kernels(text)
    changed = sorted(k for k in old.keys() & new.keys() if old[k] != new[k])
    added, removed = sorted(new.keys() - old.keys()), sorted(old.keys() - new.keys())
    assert text == golden.read_text(), f"kernels changed: {changed}, added: {added}, removed: {removed}"


def _kernels(source: str) -> dict[str, list[str]]:
    """The emitted source cut at each `def NAME(`: {NAME: its lines} (repeated names numbered),
    so that a golden mismatch names the kernels it concerns."""
    out: dict[str, list[str]] = {}
    name = "(header)"
    for line in source.splitlines():
        if line.startswith("def "):
            name = line[4 : line.index("(")]
            while name in out:
                name += "'"
        out.setdefault(name, []).append(line)
    return out


def test_a_golden_mismatch_names_the_kernels_it_concerns():
    src = "# h\n@triton.jit\ndef a(x):\n    return x\n@triton.jit\ndef b(x):\n    return 1\n"
    old, new = _kernels(src), _kernels(src.replace("return 1", "return 2") + "def c():\n    pass\n")
    assert [k for k in old if old[k] != new[k]] == ["b"] and new.keys() - old.keys() == {"c"}


def test_underflowing_sums_are_recomputed_exactly_in_the_kernels():
    """Node 0 puts all its weight on a child 5000 nats below its sibling (the group max): the
    factored sum underflows to -inf; the kernels must return the true value, and the root reads
    only that node."""
    src = UNDERFLOW_CIRCUIT
    ref, tri = _pair(src)
    x = torch.tensor([[100.0]])
    expect = -0.5 * 100.0**2 - 0.5 * np.log(2 * np.pi)
    out = tri(x).cpu()
    torch.testing.assert_close(out, torch.tensor([expect], dtype=torch.float32), rtol=1e-5, atol=1e-3)
    _compare(ref, tri, x)


def test_every_kernel_compiles_for_an_h100_without_spilling(tmp_path, monkeypatch, rng):
    """Compiled for sm_90 with the ptxas in Triton's wheel (no GPU needed): the interpreter does not
    catch kernels that fail to compile for a real target, nor register spills (the first version
    of the sum kernels spilled 7-10 KB per thread at 64-wide tiles)."""
    from pccompile.codegen.triton import TritonOptions, emit
    from pccompile.codegen.triton.aot import compile_variants, kernel_variants

    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "triton"))
    model = pc.compile(pc.build(hclt_from_tree(np.array([-1, 0, 0]), 256, latents=64)))
    emitted = emit(model.program, TritonOptions())
    variants = kernel_variants(emitted, model.program)
    mixed = pc.compile(random_circuit(rng, num_vars=6, gaussian=True))  # every input distribution
    emitted_mixed = emit(mixed.program, TritonOptions())
    inputs = [v for v in kernel_variants(emitted_mixed, mixed.program) if v.kernel == "input_fwd"]
    assert {v.constexprs["DIST"] for v in inputs} == {0, 1, 2}
    compile_variants(inputs, emitted_mixed, arch=90)
    for precision in ("bf16", "ieee"):  # the other operand precisions of the matrix-unit kernels
        other = emit(model.program, TritonOptions(precision=precision))
        dots = [v for v in kernel_variants(other, model.program) if v.constexprs.get("USE_DOT")]
        assert {v.constexprs["PRECISION"] for v in dots} == {precision}
        inputs += compile_variants(dots, other, arch=90)
    assert {"input_fwd", "sum_fwd", "sum_max", "sum_bwd", "sum_bwd_params", "em_dense"} <= {v.kernel for v in variants}
    assert any(v.constexprs.get("USE_DOT") for v in variants) and any(v.constexprs.get("FUSED") for v in variants)
    compile_variants(variants, emitted, arch=90)
    for v in variants + inputs:
        assert v.error is None, (v.kernel, v.describe(), v.error)
        assert v.usage["STACK"] <= 64, (v.kernel, v.describe(), v.usage)


def test_precompile_warms_each_specialisation_once_per_batch_class():
    """The parallel warm-up (run for real on a GPU) sees every launch of a normal pass once per
    distinct specialisation, and again only for a new class of batch size (1, multiple of 16, other)."""
    import threading

    model = pc.compile(
        pc.build(hclt_from_tree(np.array([-1, 0, 0, 1]), 8, latents=16)), backend="triton", triton={"block_b": 16}
    )
    ex = model.executor
    seen, lock = [], threading.Lock()

    def warm(c):
        with lock:
            seen.append((c.kernel, tuple(sorted(c.kwargs.items()))))

    n = ex.precompile(512, "cpu", warm=warm)
    kernels = {k for k, _ in seen}
    assert n == len(seen) == len(set(seen)) and {"input_fwd", "sum_fwd", "sum_bwd", "em_dense"} <= kernels
    assert "sum_max" not in kernels  # max-product is not part of a normal pass
    assert ex.precompile(256, "cpu", warm=warm) == 0  # same class: nothing new
    assert ex.precompile(100, "cpu", warm=warm) == n  # B not a multiple of 16: new specialisations
    assert ex.precompile(512, "cpu") == 0


def test_the_gaussian_std_floor_holds_on_the_triton_backend():
    """A subnormal std (1e-40) is evaluated as the documented floor, as on the torch backend."""
    text = "var h : real\nl = gaussian(h, mean=[0.5], std=[1e-40])\nroot = sum(l)\n"
    x = torch.tensor([[0.5], [0.6], [float("nan")]])
    got = pc.compile(text, backend="triton")(x)
    assert torch.isfinite(got).all(), got
    torch.testing.assert_close(got, pc.compile(text, backend="torch")(x))


def test_binomial_inputs_match_torch_and_compile_for_an_h100(rng, tmp_path, monkeypatch):
    """The binomial family's kernel branch (DIST 3, a log-coefficient table) against the torch
    backend with gradients and missing values, and compiled for sm_90 without spilling."""
    from pccompile.codegen.triton import TritonOptions, emit
    from pccompile.codegen.triton.aot import compile_variants, kernel_variants

    circuit = random_circuit(rng, num_vars=4, max_cats=5, binomial=True)
    while not any(getattr(n, "dist", None) and n.dist.name == "binomial" for n in circuit.nodes.values()):
        circuit = random_circuit(rng, num_vars=4, max_cats=5, binomial=True)
    ref, tri = _pair(circuit)
    _compare(ref, tri, _data(circuit, rng, 20))
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "triton"))
    emitted = emit(ref.program, TritonOptions())
    inputs = [v for v in kernel_variants(emitted, ref.program) if v.kernel == "input_fwd"]
    assert 3 in {v.constexprs["DIST"] for v in inputs}
    compile_variants([v for v in inputs if v.constexprs["DIST"] == 3], emitted, arch=90)
    for v in inputs:
        if v.constexprs["DIST"] == 3:
            assert not v.error, v.error
            assert int(v.usage.get("STACK", 0)) <= 64


@pytest.mark.parametrize("granularity", ["edge", "block"])
def test_pruned_and_trimmed_hclts_match_torch(rng, tmp_path, granularity):
    """Prune leaves masks, trimmed vectors and indexed products: the kernels read them as torch does."""
    from pccompile import run_passes as run

    x = pc.datasets.load_builtin("builtin:digits")[:200, :12]
    np.save(tmp_path / "x.npy", x)
    src = f'var px[12] : categorical(17)\nroot = hclt(px, latents=8, data="{tmp_path / "x.npy"}")\n'
    circuit = pc.compile(src, passes="init").to_circuit()
    block = 4 if granularity == "block" else 1  # tiles of 4; trim row by row
    pruned = run(circuit, f"prune{{fraction=0.8,granularity={granularity},block={block}}}", data=x)
    assert sum(n.size for n in pruned.nodes.values()) < sum(n.size for n in circuit.nodes.values())  # trimmed
    ref, tri = _pair(pruned)
    _compare(ref, tri, _data(pruned, rng, 24))


def test_exponential_and_lognormal_inputs_match_torch(rng):
    """The two families on a restricted support: their kernel branches against the torch backend,
    with gradients, missing values and a value at the edge of the support (log-normal at 0)."""
    from test_families import TWO

    circuit = pc.compile(TWO).to_circuit()
    ref, tri = _pair(circuit)
    x = torch.tensor(np.stack([rng.exponential(1.0, 24), rng.lognormal(0.0, 1.0, 24)], 1), dtype=torch.float32)
    x[torch.rand(x.shape, generator=torch.Generator().manual_seed(3)) < 0.15] = float("nan")
    _compare(ref, tri, x)
    edge = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    torch.testing.assert_close(tri(edge).detach().cpu(), ref(edge).detach())  # -inf where log-normal has no density


def test_poisson_and_geometric_inputs_match_torch(rng):
    """The count families' kernel branches (log x! by Stirling's series in the kernel) against
    the torch backend, with gradients, missing values and counts up to the thousands."""
    from test_families import COUNTS

    circuit = pc.compile(COUNTS).to_circuit()
    ref, tri = _pair(circuit)
    x = torch.tensor(np.stack([rng.poisson(6.0, 24), rng.geometric(0.3, 24) - 1], 1), dtype=torch.float32)
    x[0, 0], x[1, 1] = 2500.0, 0.0
    x[torch.rand(x.shape, generator=torch.Generator().manual_seed(4)) < 0.15] = float("nan")
    _compare(ref, tri, x)


def test_gamma_laplace_beta_and_negative_binomial_inputs_match_torch(rng):
    """The four families with shape parameters: their kernel branches (log Gamma of x + r by
    Stirling's series in the kernel) against the torch backend, with gradients, missing values,
    the clamped ends of the Beta's support and a count in the thousands."""
    from test_families_shapes import MIXED, _mixed_data

    circuit = pc.compile(MIXED).to_circuit()
    ref, tri = _pair(circuit)
    x = torch.as_tensor(_mixed_data(rng, 24))
    x[0, 3], x[1, 2], x[2, 2], x[3, 0] = 2500.0, 0.0, 1.0, 0.0
    x[torch.rand(x.shape, generator=torch.Generator().manual_seed(6)) < 0.15] = float("nan")
    _compare(ref, tri, x)
