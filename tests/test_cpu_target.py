"""The CPU target (codegen.cpu: C kernels with OpenMP) against the torch backend, the reference,
on random circuits of every structure and input family: likelihoods, marginals, flows, EM steps,
gradients, MPE and sampling. Value buffers are poisoned with NaN before each pass, so a row read
before it is written, or never written, shows up. Without a C compiler these tests are skipped
and the fallback tests below still run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import UNDERFLOW_CIRCUIT, ZERO_EVIDENCE_CIRCUIT, all_assignments, random_circuit
from pccompile.codegen import backends
from pccompile.codegen.cpu import build
from pccompile.ir import ArgumentError

import pccompile as pc
from pccompile.analysis.flows import batch_flows
from pccompile.learn import em_update
from pccompile.structures import hclt_from_tree, hmm, pd, rat_spn

# Skipped only where there is no C compiler: where there is one, kernels that fail to build fail
# these tests instead of skipping them.
needs_compiler = pytest.mark.skipif(build.compiler() is None, reason="no C compiler here")


TOL = dict(rtol=1e-5, atol=1e-5)


def _pair(circuit, cpu_options=None, **kw):
    ref = pc.compile(circuit, backend="torch", **kw)
    cpu = pc.compile(circuit, backend="cpu", cpu=cpu_options, **kw)
    cpu.executor.poison = True
    return ref, cpu


def _data(circuit, rng, n, missing=0.15):
    cols = []
    for v in circuit.variables:
        k = v.domain.num_cats
        cols.append(rng.integers(k, size=n).astype(float) if k else rng.normal(size=n))
    x = torch.tensor(np.stack(cols, 1), dtype=torch.float32)
    x[torch.as_tensor(rng.random(x.shape) < missing)] = float("nan")
    return x


def _structures(rng):
    """(name, circuit): one of each template and random circuits using every IR feature."""
    parent = np.array([-1, 0, 0, 1, 1, 2, 3])
    yield "hclt", pc.to_circuit(hclt_from_tree(parent, [3, 2, 4, 3, 2, 5, 3], latents=8))
    yield "hclt-released", pc.to_circuit(hclt_from_tree(parent, 4, latents=6, leaf_sums=False))
    yield "rat-spn", pc.to_circuit(rat_spn(6, 3, depth=2, repetitions=2, num_sums=4, num_inputs=3))
    yield "pd", pc.to_circuit(pd(2, 3, 3, latents=3))
    yield "hmm", pc.to_circuit(hmm(5, 3, 4))
    yield "random-sparse-tied", random_circuit(rng, num_vars=5, sparse=True, tie=True)
    yield "random-gaussian", random_circuit(rng, num_vars=5, gaussian=True)
    yield "random-binomial", random_circuit(rng, num_vars=5, binomial=True)


def _compare_likelihoods_and_gradients(ref, cpu, x):
    a, b = ref(x), cpu(x)
    assert not torch.isnan(b).any()
    torch.testing.assert_close(b, a, **TOL)
    g = torch.randn(x.shape[0])
    (a * g).sum().backward()
    (b * g).sum().backward()
    for (name, p), q in zip(ref.named_parameters(), cpu.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-5, msg=name)
    with torch.no_grad():
        torch.testing.assert_close(cpu(x), a.detach(), **TOL)


@needs_compiler
def test_every_structure_and_family_matches_the_torch_backend(rng):
    for name, circuit in _structures(rng):
        ref, cpu = _pair(circuit)
        assert cpu.backend == "cpu"
        x = _data(circuit, rng, 45)  # a partial last tile of samples
        _compare_likelihoods_and_gradients(ref, cpu, x)
        fr, fc = batch_flows(ref, x), batch_flows(cpu, x)
        torch.testing.assert_close(fc.sum_flows, fr.sum_flows, rtol=1e-4, atol=1e-4, msg=name)
        for sr, sc in zip(fr.inputs, fc.inputs):
            for key in sr:
                torch.testing.assert_close(sc[key], sr[key], rtol=1e-4, atol=1e-4, msg=f"{name} {key}")
        em_update(ref, fr, 0.5, 0.1)
        em_update(cpu, fc, 0.5, 0.1)
        for p, q in zip(ref.parameters(), cpu.parameters()):
            torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-4, msg=name)
        q = x.clone()
        q[:, ::2] = float("nan")
        torch.testing.assert_close(cpu.mpe(q), ref.mpe(q), msg=name)
        torch.testing.assert_close(cpu.sample(6, seed=3), ref.sample(6, seed=3), msg=name)


@needs_compiler
@pytest.mark.parametrize("fuse", [True, False])
def test_fused_and_unfused_layers_and_batch_sizes(rng, fuse):
    """A larger HCLT (groups of 32 nodes and children, four-row blocks and a remainder) with and
    without product fusion, at batch sizes around the tile of 32 samples."""
    parent = np.array([-1] + [int(rng.integers(0, i)) for i in range(1, 12)])
    circuit = pc.to_circuit(hclt_from_tree(parent, 6, latents=33))
    ref, cpu = _pair(circuit, fuse=fuse)
    for n in (1, 31, 32, 33, 70):
        _compare_likelihoods_and_gradients(ref, cpu, _data(circuit, rng, n))
        ref.zero_grad()
        cpu.zero_grad()


@needs_compiler
def test_brute_force_marginals_sum_to_one_and_match_enumeration(rng):
    circuit = random_circuit(rng, num_vars=4, sparse=True)
    _, cpu = _pair(circuit)
    grid = torch.tensor(all_assignments(circuit))
    with torch.no_grad():
        total = torch.logsumexp(cpu(grid), 0)
        partial = grid.clone().float()
        partial[:, 0] = float("nan")
        marg = cpu(partial)
    torch.testing.assert_close(total, torch.tensor(0.0), atol=1e-5, rtol=0)
    ll = cpu(grid).detach()  # each marginal is the sum over variable 0's values of the joint
    for row in range(0, len(grid), 7):
        same = (grid[:, 1:] == grid[row, 1:]).all(1)
        torch.testing.assert_close(marg[row], torch.logsumexp(ll[same], 0), atol=1e-5, rtol=0)


@needs_compiler
@pytest.mark.parametrize("rows", [1, 45])  # a partial tile only; a full tile of 32 samples and a partial one
def test_underflowing_sums_are_recomputed_exactly(rows):
    """Node 0 puts all its weight on a child 5,000 nats below its sibling (the group max): the
    factored sum underflows, and the kernel's exact path must return the true value."""
    src = UNDERFLOW_CIRCUIT
    ref, cpu = _pair(src)
    x = torch.full((rows, 1), 100.0)
    expect = -0.5 * 100.0**2 - 0.5 * np.log(2 * np.pi)
    torch.testing.assert_close(cpu(x), torch.full((rows,), expect, dtype=torch.float32), rtol=1e-5, atol=1e-3)
    _compare_likelihoods_and_gradients(ref, cpu, x)


@needs_compiler
def test_zero_probability_evidence_is_minus_inf_without_nan():
    src = ZERO_EVIDENCE_CIRCUIT
    ref, cpu = _pair(src)
    x = torch.tensor([[1, 0], [0, 1], [1, 1]])
    out = cpu(x)
    assert out[0] == float("-inf") and out[2] == float("-inf") and torch.isfinite(out[1])
    torch.testing.assert_close(out, ref(x))
    assert not torch.isnan(batch_flows(cpu, x).sum_flows).any()


@needs_compiler
def test_auto_picks_the_cpu_target_in_float32_and_the_reference_in_float64():
    assert pc.compile("examples/mixture.pc").backend == "cpu"
    assert pc.compile("examples/mixture.pc", dtype=torch.float64).backend == "torch"
    with pytest.raises(ArgumentError, match="float32, not torch.float64"):
        pc.compile("examples/mixture.pc", backend="cpu", dtype=torch.float64)


def test_without_a_compiler_auto_falls_back_with_one_line_and_cpu_is_refused(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setenv("PCCOMPILE_CACHE", str(tmp_path))
    monkeypatch.setattr(backends, "_told", set())
    build.build_error.cache_clear()
    build.load_library.cache_clear()
    try:
        assert "no C compiler found" in build.build_error()
        assert backends.choose_backend("auto", "cpu") == "torch"
        assert backends.choose_backend("auto", "cpu") == "torch"
        err = capsys.readouterr().err
        assert err.count("using the torch backend") == 1 and "no C compiler found" in err
        with pytest.raises(ArgumentError, match="backend 'cpu' cannot build its kernels here: no C compiler"):
            pc.compile("examples/mixture.pc", backend="cpu")
    finally:
        build.build_error.cache_clear()
        build.load_library.cache_clear()


def test_a_failing_compiler_is_reported_with_its_first_message(monkeypatch, tmp_path):
    fake = tmp_path / "cc"
    fake.write_text(
        "#!/bin/sh\nif [ \"$1\" = --version ]; then echo fake 1.0; exit 0; fi\necho 'kernels.c:1: error: broken' >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("CC", str(fake))
    monkeypatch.setenv("PCCOMPILE_CACHE", str(tmp_path / "cache"))
    build.build_error.cache_clear()
    build.load_library.cache_clear()
    try:
        assert build.build_error() == "cc failed to build the CPU kernels: kernels.c:1: error: broken"
    finally:
        build.build_error.cache_clear()
        build.load_library.cache_clear()


def test_unknown_backends_and_the_wrong_device_are_refused():
    with pytest.raises(ArgumentError, match="unknown backend 'gpu'; expected auto, triton, cpu, torch"):
        pc.compile("examples/mixture.pc", backend="gpu")
    with pytest.raises(ArgumentError, match="backend 'cpu' runs on the CPU, not on cuda"):
        backends.choose_backend("cpu", "cuda")
    with pytest.raises(ArgumentError, match=r"options for unknown backends \['gpu'\]"):
        backends.backend_options(True, gpu={"fuse": False})
    program = pc.compile("examples/mixture.pc", backend="torch").program
    with pytest.raises(ArgumentError, match="the cpu backend computes in float32, not torch.float64"):
        backends.make_executor(program, "cpu", backends.backend_options(True), torch.float64)
    assert backends.make_executor(program, "torch", backends.backend_options(True), torch.float64) is not None


def test_the_backends_table_is_the_only_list_of_backends():
    """Each entry brings its options, dtypes, device rule and source; nothing outside the table
    names a backend to decide something."""
    assert set(backends.backend_options(False)) == set(backends.BACKENDS)
    assert backends.emitters() == ("triton", "cpu")
    assert "pc_sum_forward" in backends.emit_source(pc.compile("examples/mixture.pc").program, "cpu", {})
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    for f in (
        "pccompile/runtime/module.py",
        "pccompile/compiler.py",
        "pccompile/io/model_file.py",
        "pccompile/cli/common.py",
    ):
        text = (root / f).read_text()
        assert not re.search(r"backend\s*[!=]=\s*[\"'](torch|cpu|triton)", text), f
        assert not re.search(r"[\"'](triton|cpu)[\"']\s*:\s*\{", text), f  # per-backend option dicts


@needs_compiler
def test_the_build_is_cached_by_its_key(monkeypatch, tmp_path):
    monkeypatch.setenv("PCCOMPILE_CACHE", str(tmp_path))
    build.load_library.cache_clear()
    try:
        build.load_library()
        built = list((tmp_path / "cpu").glob("kernels-*.so"))
        assert len(built) == 1
        stamp = built[0].stat().st_mtime_ns
        build.load_library.cache_clear()
        build.load_library()  # a second process: reads the cache, builds nothing
        assert [p.stat().st_mtime_ns for p in (tmp_path / "cpu").glob("kernels-*.so")] == [stamp]
    finally:
        build.load_library.cache_clear()


def test_pcc_emit_target_cpu_prints_the_kernels_and_one_call_per_partition(tmp_path):
    from typer.testing import CliRunner

    from pccompile.cli import app
    from pccompile.dsl import print_circuit

    circuit = pc.to_circuit(hclt_from_tree(np.array([-1, 0, 0, 1]), 3, latents=4))
    program = pc.compile(circuit, backend="torch").program
    sums = sum(len(lay.partitions) for lay in program.layers if lay.kind == "sum")
    spec = tmp_path / "c.pc"
    spec.write_text(print_circuit(circuit))
    runner = CliRunner()
    out = runner.invoke(app, ["emit", str(spec), "--target", "cpu"])
    assert out.exit_code == 0, out.output
    assert out.output.startswith(build.kernel_source())
    assert out.output.count("pc_sum_forward(g=") == sums == out.output.count("pc_sum_backward(g=")
    assert "/*   l1p0: pc_sum_forward(g=" in out.output and "G=4, K=4" in out.output
    bad = runner.invoke(app, ["emit", str(spec), "--target", "gpu"])
    assert bad.exit_code != 0 and "unknown target 'gpu'; expected triton or cpu" in bad.output


def test_the_launch_plan_names_the_sparse_kernels_for_masked_partitions(tmp_path):
    """A pruned HCLT's masked partitions are pc_sparse_* calls in the plan, exactly the ones the
    executor runs as sparse blocks; the others stay pc_sum_*."""
    from pccompile.codegen.cpu.executor import CpuExecutor
    from pccompile.codegen.cpu.plan import launch_plan

    from pccompile import run_passes as run

    x = pc.datasets.load_builtin("builtin:digits")[:200, :12]
    np.save(tmp_path / "x.npy", x)
    src = f'var px[12] : categorical(17)\nroot = hclt(px, latents=8, data="{tmp_path / "x.npy"}")\n'
    pruned = run(pc.compile(src, passes="init").to_circuit(), "prune{fraction=0.8}", data=x)
    program = pc.compile(pruned, backend="torch").program
    sums = sum(len(lay.partitions) for lay in program.layers if lay.kind == "sum")
    plan = launch_plan(program)
    ex = CpuExecutor(program) if build.build_error() is None else None
    sparse = None if ex is None else len(ex._sparse[id(ex.fused)])  # the fused pass's, as the plan shows
    assert plan.count("pc_sparse_forward(g=") == plan.count("pc_sparse_backward(g=") > 0
    assert plan.count("pc_sparse_forward(g=") + plan.count("pc_sum_forward(g=") == sums
    assert "% live" in plan and (sparse is None or plan.count("pc_sparse_forward(g=") == sparse)
    assert launch_plan(program, sparse_density=0.0).count("pc_sparse_forward") == 0


def test_factor_counts_put_real_factors_first_and_count_them():
    from pccompile.codegen.cpu.executor import factor_counts
    from pccompile.ir import ONE_ROW, ZERO_ROW

    comp = np.array([[[5, ONE_ROW, 7], [ONE_ROW, ONE_ROW, ONE_ROW], [ZERO_ROW, ONE_ROW, ONE_ROW]]])
    packed, counts = factor_counts(comp)
    assert packed.tolist() == [[[5, 7, ONE_ROW], [ONE_ROW, ONE_ROW, ONE_ROW], [ZERO_ROW, ONE_ROW, ONE_ROW]]]
    assert counts.tolist() == [[2, 1, 1]]  # a child of no factor reads one ONE_ROW: log 1


def _sparse_runs(model) -> int:
    """How many partitions the CPU target runs as sparse blocks."""
    return sum(len(found) for found in model.executor._sparse.values())


@needs_compiler
@pytest.mark.parametrize("granularity", ["edge", "block"])
@pytest.mark.parametrize("grow", [False, True])
@pytest.mark.parametrize("sparse_density", [0.0, 1.0])
def test_pruned_and_grown_hclts_match_the_torch_backend(rng, tmp_path, granularity, grow, sparse_density):
    """Prune leaves masked sums (weight ids with the padding slot), trimmed vectors and indexed
    products, and grow copies the masks: the kernels read them as the torch backend does, flows
    and EM included, whether the masked sums run dense (0) or as sparse blocks (1)."""
    from pccompile import run_passes as run

    x = pc.datasets.load_builtin("builtin:digits")[:200, :12]
    np.save(tmp_path / "x.npy", x)
    src = f'var px[12] : categorical(17)\nroot = hclt(px, latents=8, data="{tmp_path / "x.npy"}")\n'
    circuit = pc.compile(src, passes="init").to_circuit()
    block = 4 if granularity == "block" else 1
    steps = f"prune{{fraction=0.8,granularity={granularity},block={block}}}" + (", grow{factor=2}" if grow else "")
    pruned = run(circuit, steps, data=x)
    ref, cpu = _pair(pruned, cpu_options={"sparse_density": sparse_density})
    if sparse_density == 0 or granularity == "edge":  # whole pruned tiles may leave no masked group
        assert (_sparse_runs(cpu) > 0) == (sparse_density > 0)
    data = _data(pruned, rng, 40)
    _compare_likelihoods_and_gradients(ref, cpu, data)
    fr, fc = batch_flows(ref, data), batch_flows(cpu, data)
    torch.testing.assert_close(fc.sum_flows, fr.sum_flows, rtol=1e-4, atol=1e-4)
    em_update(ref, fr, 0.5, 0.1)
    em_update(cpu, fc, 0.5, 0.1)
    for p, q in zip(ref.parameters(), cpu.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-4)


@needs_compiler
def test_random_sparse_circuits_run_as_sparse_blocks_match_the_torch_backend(rng):
    for _ in range(3):
        circuit = random_circuit(rng, num_vars=6, sparse=True, tie=True)
        ref, cpu = _pair(circuit, cpu_options={"sparse_density": 1.0})
        x = _data(circuit, rng, 37)
        _compare_likelihoods_and_gradients(ref, cpu, x)
        fr, fc = batch_flows(ref, x), batch_flows(cpu, x)
        torch.testing.assert_close(fc.sum_flows, fr.sum_flows, rtol=1e-4, atol=1e-4)


# Node 0 of s reads children 0 and 1 but weighs only child 0, 5,000 nats below child 1 at h = 100:
# its factored sum underflows. The mask makes s a masked group, so the sparse kernels run it.


SPARSE_UNDERFLOW_CIRCUIT = """var h : real
lh[3] = gaussian(h, mean=[0, 100, 50], std=[1, 1, 1])
s[2] = sum(lh, mask=[[1, 1, 0], [0, 1, 1]], weights=[[1, 0, 0], [0, 0.5, 0.5]])
p[2] = product(s)
root = sum(p, weights=[[1, 0]])
"""


@needs_compiler
@pytest.mark.parametrize("repeats", [1, 15])  # 3 samples (a partial tile), 45 (a full tile and a partial one)
def test_sparse_blocks_recompute_underflowing_sums_exactly(repeats):
    ref, cpu = _pair(SPARSE_UNDERFLOW_CIRCUIT, cpu_options={"sparse_density": 1.0})
    assert _sparse_runs(cpu) == 1
    x = torch.tensor([[100.0], [0.0], [60.0]]).repeat(repeats, 1)
    expect = -0.5 * 100.0**2 - 0.5 * np.log(2 * np.pi)
    torch.testing.assert_close(cpu(x)[0], torch.tensor(expect, dtype=torch.float32), rtol=1e-5, atol=1e-3)
    _compare_likelihoods_and_gradients(ref, cpu, x)
    fr, fc = batch_flows(ref, x), batch_flows(cpu, x)
    # node 0's edge to child 0 carries its whole flow (1 per sample), two of every three samples
    # through the exact path: both backends must add both
    n = 3.0 * repeats
    assert fr.sum_flows[0].item() == pytest.approx(n) and fc.sum_flows[0].item() == pytest.approx(n)
    torch.testing.assert_close(fc.sum_flows, fr.sum_flows, rtol=1e-4, atol=1e-5)


def test_sparse_blocks_group_rows_with_the_same_live_columns():
    """Hand-worked layout: group 0 has rows 0 and 2 alike (one block of two) and row 1 alone;
    group 1 has five alike rows (blocks of four and one). Pad is slot 99."""
    from pccompile.codegen.cpu.sparse import sparse_blocks

    P = 99
    g0 = [[10, P, 11], [P, 12, P], [13, P, 14], [P, P, P], [P, P, P]]
    g1 = [[20 + 2 * i, 21 + 2 * i, P] for i in range(5)]
    blocks = sparse_blocks(np.array([g0, g1]), P)
    assert blocks.group_start.tolist() == [0, 3, 5]
    assert blocks.count.tolist() == [2, 1, 2, 4, 1]
    assert blocks.rows.view(-1, 4)[:, :2].tolist() == [[3, 4], [1, 0], [0, 2], [0, 1], [4, 0]]
    cols = [blocks.cols[a:b].tolist() for a, b in zip(blocks.col_start[:-1], blocks.col_start[1:])]
    assert cols == [[], [1], [0, 2], [0, 1], [0, 1]]
    # edges: per block, per column, its rows in order
    assert blocks.param_ids.tolist() == [12, 10, 13, 11, 14, 20, 22, 24, 26, 21, 23, 25, 27, 28, 29]
    assert blocks.w_start.tolist() == [0, 0, 1, 5, 13]
    assert blocks.group_edges == 10 and blocks.density == pytest.approx(15 / 30)


OUTER_UNDERFLOW_CIRCUIT = """var h : real
var u : real
la[2] = gaussian(h, mean=[0, 100], std=[1, 1])
lb[2] = gaussian(u, mean=[0, 1], std=[1, 1])
ab[4] = product(la[[0, 0, 1, 1]], lb[[0, 1, 0, 1]])
s[2] = sum(ab, weights=[[0.5, 0.5, 0, 0], [0.25, 0.25, 0.25, 0.25]])
root = sum(s, weights=[[1, 0]])
"""


def _outer_runs(model) -> int:
    """How many sum partitions the CPU target reads as an outer product."""
    return sum(sl.outer for arrays in model.executor._arrays.values() for sl in arrays.values() if hasattr(sl, "outer"))


@needs_compiler
@pytest.mark.parametrize("rows", [1, 45])
def test_outer_products_are_read_as_two_vectors_and_underflow_exactly(rows):
    ref, cpu = _pair(OUTER_UNDERFLOW_CIRCUIT)
    assert _outer_runs(cpu) >= 1
    u = torch.linspace(-2, 2, rows)
    x = torch.stack([torch.full((rows,), 100.0), u], 1)
    log_n = lambda v, mu: -0.5 * (v - mu) ** 2 - 0.5 * np.log(2 * np.pi)  # noqa: E731
    la = [log_n(100.0, 0.0), log_n(100.0, 100.0)]
    s0 = la[0] + torch.logsumexp(torch.stack([log_n(u, 0.0), log_n(u, 1.0)]) + np.log(0.5), 0)
    torch.testing.assert_close(cpu(x), s0.float(), rtol=1e-5, atol=1e-3)
    _compare_likelihoods_and_gradients(ref, cpu, x)
    fr, fc = batch_flows(ref, x), batch_flows(cpu, x)
    torch.testing.assert_close(fc.sum_flows, fr.sum_flows, rtol=1e-4, atol=1e-5)
    # all of it on the root's and s0's edges: 1 per sample each, to float32's precision at log values near -5,000
    torch.testing.assert_close(fc.sum_flows.sum(), torch.tensor(2.0 * rows), rtol=1e-3, atol=0)


@needs_compiler
@pytest.mark.parametrize("masked", [False, True])
def test_tied_sums_in_one_partition_add_their_weight_flows_to_the_one_weight(rng, masked):
    """Unmasked, the tied layer is one block twice; masked, it is padded: either way its flows
    go to ids that repeat (added on one thread)."""
    mask = np.array([[True, False], [True, True]]) if masked else None
    x = [pc.inputs(i, 2, pc.Categorical(3)) for i in range(4)]
    s1 = pc.summate(pc.multiply(x[0], x[1]), size=2, mask=mask)
    s2 = pc.summate(pc.multiply(x[2], x[3]), size=2, mask=mask, tie=s1)  # the same weights, the same layer
    circuit = pc.to_circuit(pc.summate(pc.multiply(s1, s2), size=1))
    ref, cpu = _pair(circuit, {"sparse_density": 0.0})
    data = torch.as_tensor(rng.integers(0, 3, (200, 4)), dtype=torch.float32)
    _compare_likelihoods_and_gradients(ref, cpu, data)
    for layout in cpu.executor._layouts.values():  # the unfused and the fused layout
        assert layout.unique["l2p0"] is False
        assert "l2p0" in (layout.padded if masked else layout.in_place)
        if not masked:  # read in place: the tied layer's two groups at one offset
            assert layout.in_place["l2p0"].tolist() == [layout.in_place["l2p0"][0]] * 2
    fr, fc = batch_flows(ref, data), batch_flows(cpu, data)
    torch.testing.assert_close(fc.sum_flows, fr.sum_flows, rtol=1e-4, atol=1e-4)


@needs_compiler
@pytest.mark.parametrize("structure", ["hclt", "rat-spn", "random-sparse-tied"])
def test_flows_are_written_without_zeroing_where_whole_tiles_get_no_flow(rng, structure):
    """The flows buffer is not zeroed (each row's first flow is stored): a tile no flow reaches
    must still write zeros into the rows it is the first to reach. The root's flow is 0 on the
    first tile of samples, so every group skips it."""
    circuit = dict(_structures(rng))[structure]
    ref, cpu = _pair(circuit)
    assert cpu.executor._first.untouched.numel() < cpu.executor.fused.num_rows
    x = _data(circuit, rng, 45)
    grad = torch.rand(45) + 0.5
    grad[:32] = 0.0
    with torch.no_grad():
        out = []
        for model in (ref, cpu):
            logw = model.sum_log_weights(padded=True)
            mars = model.node_values(*model.encode(x), logw)
            for _ in range(2):  # the kept buffer, holding the last step's flows, the second time
                flows, wf = model.executor.backward_flows(mars, logw, grad, reuse=True)
            out.append((flows.clone(), wf.clone()))
    (fr, wr), (fc, wc) = out
    assert not torch.isnan(fc).any()
    assert torch.all(fc[:, :32] == 0)
    torch.testing.assert_close(fc, fr, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(wc, wr, rtol=1e-4, atol=1e-5)


@needs_compiler
@pytest.mark.parametrize("rows", [37, 70])
def test_large_groups_match_the_torch_backend(rng, rows):
    """A Tucker layer of 20 sums over 29 x 29 products: groups of 16,820 edges, whose 20 nodes and
    841 children are neither whole vectors nor whole register blocks of the weight flows'
    product; 37 and 70 rows end in a partial tile."""
    circuit = pc.to_circuit(rat_spn(4, 3, depth=2, repetitions=1, num_sums=20, num_inputs=29))
    ref, cpu = _pair(circuit)
    sizes = {sl.group_size * sl.comp.shape[1] * max(sl.comp_b.shape[1], 1) for a in cpu.executor._arrays.values()
             for sl in a.values() if hasattr(sl, "outer")}  # fmt: skip
    assert max(sizes) == 20 * 29 * 29
    x = _data(circuit, rng, rows)
    _compare_likelihoods_and_gradients(ref, cpu, x)
    fr, fc = batch_flows(ref, x), batch_flows(cpu, x)
    torch.testing.assert_close(fc.sum_flows, fr.sum_flows, rtol=1e-4, atol=1e-4)
