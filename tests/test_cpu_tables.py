"""The CPU target's kernels for families over K values (codegen/cpu/inputs.py): the batch's codes
per run, the table lookup, the EM counts and the categorical M-step, against enumeration and
the torch backend, with NaN-poisoned outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pccompile.codegen.cpu import build
from test_cpu_target import TOL, _compare_likelihoods_and_gradients, _data, _pair, needs_compiler

import pccompile as pc
from pccompile.analysis.flows import batch_flows
from pccompile.learn import em_update
from pccompile.structures import hclt_from_tree


@needs_compiler
def test_table_kernels_read_runs_of_unequal_length(rng, tmp_path):
    """After prune and trim, an HCLT's input vectors have different sizes per variable (no single
    run length): the counting kernel still applies (it returned None for such partitions and
    left them to torch) and gives torch's counts; the lookup gives torch's log-probabilities."""
    from pccompile.ir import family

    from pccompile import run_passes as run

    x = pc.datasets.load_builtin("builtin:digits")[:200, :12]
    np.save(tmp_path / "x.npy", x)
    src = f'var px[12] : categorical(17)\nroot = hclt(px, latents=8, data="{tmp_path / "x.npy"}")\n'
    pruned = run(pc.compile(src, passes="init").to_circuit(), "prune{fraction=0.8}", data=x)
    ref, cpu = _pair(pruned)
    part, h = cpu.program.input_partitions[0], cpu.inputs[0]
    assert part.run_length is None and len(set(np.unique(part.vars, return_counts=True)[1])) > 1
    data = _data(pruned, rng, 40)
    xi, xr = cpu.encode(data)
    f = torch.rand(part.size, xi.shape[0])
    counted = cpu.executor.input_stats(part, h.vars, f, xi, xr)
    assert counted is not None
    expect = family(part.dist).stats(part, dict(h.named_parameters()), h.vars, f, xi, xr)
    for key in expect:
        torch.testing.assert_close(counted[key], expect[key], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cpu(data), ref(data), **TOL)


@needs_compiler
def test_the_categorical_m_step_keeps_zero_probabilities_at_minus_inf():
    """A value no row shows, with pseudocount 0 and probability 0 before: theta 0, logit -inf,
    on both backends (the kernel's row with a zero takes libm's log)."""
    src = "var a : categorical(3)\nvar b : binary\nla[2] = categorical(a, probs=[[0.5, 0.5, 0], [0.2, 0.8, 0]])\n"
    src += "lb[2] = bernoulli(b)\np[2] = product(la, lb)\nroot = sum(p)\n"
    ref, cpu = _pair(src)
    x = torch.tensor([[0, 1], [1, 0], [1, 1], [0, 0]])
    em_update(ref, batch_flows(ref, x), 1.0, 0.0)
    em_update(cpu, batch_flows(cpu, x), 1.0, 0.0)
    logits = cpu.inputs[0].logits
    assert torch.isinf(logits[:, 2]).all() and torch.isfinite(logits[:, :2]).all()
    torch.testing.assert_close(torch.softmax(logits, 1), torch.softmax(ref.inputs[0].logits, 1), rtol=1e-5, atol=1e-6)


# s0 weighs only the children of la0, 5,000 nats below la1 at h = 100: its factored sum over the
# outer product of la and lb underflows, and the outer-product kernels' exact path must take it,
# forward and backward (the root's flow all goes to s0).


@needs_compiler
def test_table_inputs_on_the_autograd_path_use_the_kernels_and_match_torch_gradients(rng):
    """An HCLT's categorical rows through TableLookup (lookup kernel forward, counting kernel
    backward), with missing values: the logits' gradients equal the torch backend's gather."""
    parent = np.array([-1, 0, 0, 1, 1, 2])
    ref, cpu = _pair(pc.build(hclt_from_tree(parent, 5, 4)))
    x = _data(ref.circuit, rng, 45)
    xi, xr = cpu.encode(x)
    part, h = cpu.program.input_partitions[0], cpu.inputs[0]
    block = cpu.executor.input_block(part, dict(h.named_parameters()), h.vars, xi, xr)
    assert type(block.grad_fn).__name__ == "TableLookupBackward"
    _compare_likelihoods_and_gradients(ref, cpu, x)


@needs_compiler
def test_run_codes_match_the_batch_and_follow_changes_to_it(rng):
    from pccompile.codegen.cpu.inputs import run_codes, variable_runs

    circuit = pc.to_circuit(hclt_from_tree(np.array([-1, 0, 0, 1, 1]), 4, latents=3))
    cpu = pc.compile(circuit, backend="cpu")
    part = cpu.program.input_partitions[0]
    x = torch.as_tensor(rng.integers(-1, 4, (37, 5)))  # -1: missing
    var = variable_runs(part)[1]
    expected = torch.where(x[:, var] < 0, part.num_cats, x[:, var]).T
    codes = run_codes(cpu.executor.lib, part, x)
    torch.testing.assert_close(codes, expected)
    assert run_codes(cpu.executor.lib, part, x) is codes  # the same batch: kept
    x[0, int(var[0])] = (int(x[0, int(var[0])]) + 1) % 4  # in place: gathered again
    assert int(run_codes(cpu.executor.lib, part, x)[0, 0]) == int(x[0, int(var[0])])
    y = x.clone()
    assert run_codes(cpu.executor.lib, part, y) is not codes
    strided = torch.as_tensor(rng.integers(-1, 4, (5, 37))).T  # not contiguous: the torch path
    torch.testing.assert_close(
        run_codes(cpu.executor.lib, part, strided), torch.where(strided[:, var] < 0, part.num_cats, strided[:, var]).T
    )


def _runs_and_codes(rng, batch: int, K: int):
    """Runs of 1 to 9 rows and their codes: where one value dominates (taken by whole vectors),
    where none does, and where the dominant one is the missing code K."""
    lengths = rng.integers(1, 10, size=12)
    run = torch.as_tensor(np.repeat(np.arange(lengths.size), lengths))
    codes = rng.integers(0, K + 1, size=(lengths.size, batch))
    dominant = rng.random(codes.shape) < 0.8
    codes[0::3][dominant[0::3]] = 2
    codes[1::3][dominant[1::3]] = K  # mostly missing
    return run, torch.as_tensor(codes)


@needs_compiler
@pytest.mark.parametrize("batch", [5, 37, 512])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_the_counting_kernel_matches_counts_by_enumeration(rng, batch, threads):
    """Batches shorter than a vector and not a multiple of one; an output buffer full of NaN
    (the kernel zeroes its rows)."""
    lib, K = build.load_library(), 6
    run, codes = _runs_and_codes(rng, batch, K)
    m = run.numel()
    f = torch.rand(m, batch)
    out = torch.full((m, K + 1), float("nan"))
    lib.pc_table_counts(out.data_ptr(), f.data_ptr(), batch, m, run.data_ptr(), K, codes.data_ptr(), threads)
    expected = np.zeros((m, K + 1))
    for r in range(m):
        np.add.at(expected[r], codes[run[r]].numpy(), f[r].double().numpy())
    torch.testing.assert_close(out.double(), torch.as_tensor(expected), rtol=1e-5, atol=1e-5)


@needs_compiler
@pytest.mark.parametrize("batch", [5, 37, 512])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_the_lookup_kernel_matches_the_table_at_every_code(rng, batch, threads):
    """Every entry of a NaN-poisoned output is its row's table entry at the sample's code, 0 (log
    1) where the code is K (missing)."""
    lib, K = build.load_library(), 6
    run, codes = _runs_and_codes(rng, batch, K)
    m = run.numel()
    table = torch.randn(m, K)
    out = torch.full((m, batch), float("nan"))
    lib.pc_table_inputs(out.data_ptr(), batch, m, run.data_ptr(), K, table.data_ptr(), codes.data_ptr(), threads)
    padded = torch.cat([table, torch.zeros(m, 1)], 1)
    expected = torch.gather(padded, 1, codes[run])
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


@needs_compiler
@pytest.mark.parametrize("pseudocount", [0.0, 0.1])
def test_the_sum_weights_m_step_kernel_matches_the_runtimes_update(rng, pseudocount):
    """The dense blocks' M-step kernel against the runtime's torch update, on rows of 37 weights
    (not whole vectors), a row without flow (kept as it was where pseudocount is 0) and, at step
    1, weights without flow (log 0 = -inf where pseudocount is 0)."""
    parent = np.array([-1, 0, 0, 1, 1, 2])
    cpu = pc.compile(pc.build(hclt_from_tree(parent, 3, 37)), backend="cpu")
    rows = cpu.sum_rows
    assert {k for _, _, k in rows.blocks} >= {37} and cpu.executor._dense_blocks.numel()
    logw = cpu.sum_log_weights(padded=True)[: cpu.program.num_sum_params].contiguous()
    flows = torch.as_tensor(rng.random(logw.shape[0]), dtype=torch.float32)
    flows[torch.as_tensor(rng.random(logw.shape[0]) < 0.3)] = 0.0
    a, b, k = rows.blocks[0]
    flows[a : a + k] = 0.0  # one row without flow
    for step in (0.3, 1.0):
        expect, got = cpu.sum_logits.detach().clone(), cpu.sum_logits.detach().clone()
        rows.em_update(expect, logw, flows, step, pseudocount)
        assert cpu.executor.em_dense_blocks(got, logw, flows, step, pseudocount)
        rows.em_update(got, logw, flows, step, pseudocount, blocks=False)  # the masked rows, if any
        torch.testing.assert_close(got, expect, rtol=1e-5, atol=1e-5)
        assert torch.equal(torch.isinf(got), torch.isinf(expect))
        assert bool(torch.isinf(expect).any()) == (step == 1.0 and pseudocount == 0.0)


@needs_compiler
def test_the_forward_after_a_categorical_m_step_reads_its_logits_until_they_change(rng, monkeypatch):
    """After the M-step kernel the forward's table is the logits themselves (no log-softmax). A
    change in place through torch is seen: a constant added to every logit (which leaves the
    distribution as it was, and would shift every stale row by it), then load_state_dict (of
    normalised logits: found so, and read as they are); the likelihoods stay the torch backend's
    throughout; unnormalised logits are checked once per version, not once per batch."""
    from pccompile.codegen.cpu import inputs
    from pccompile.codegen.cpu.inputs import log_table, normalised

    _normalised = normalised

    ref, cpu = _pair(pc.build(hclt_from_tree(np.array([-1, 0, 0, 1, 1, 2]), 5, 4)))
    x = _data(ref.circuit, rng, 64)
    part, h = cpu.program.input_partitions[0], cpu.inputs[0]
    assert log_table(part, dict(h.named_parameters())).data_ptr() != h.logits.data_ptr()  # not yet
    for model in (ref, cpu):
        em_update(model, batch_flows(model, x), 0.5, 0.1)
    assert log_table(part, dict(h.named_parameters())).data_ptr() == h.logits.data_ptr()
    assert normalised(h.logits, h.logits.log_softmax(1))  # as a resumed run finds them
    with torch.no_grad():
        torch.testing.assert_close(cpu(x), ref(x), **TOL)
        for model in (ref, cpu):
            model.inputs[0].logits.add_(3.0)
        torch.testing.assert_close(cpu(x), ref(x), **TOL)
        checks = []
        monkeypatch.setattr(inputs, "normalised", lambda *a: checks.append(1) or _normalised(*a))
        torch.testing.assert_close(cpu(x[:9]), ref(x[:9]), **TOL)  # the same version: not checked again
        assert not checks
        for model in (ref, cpu):  # normalised again (cpu's by its kernel), then cpu's replaced by ref's
            em_update(model, batch_flows(model, x), 0.5, 0.1)
        cpu.load_state_dict(ref.state_dict())
        torch.testing.assert_close(cpu(x), ref(x), **TOL)
        assert log_table(part, dict(h.named_parameters())).data_ptr() == h.logits.data_ptr()  # checked, normalised


@needs_compiler
@pytest.mark.parametrize("step", [1.0, 0.3])
def test_an_em_step_counts_and_updates_in_one_pass_as_in_two(rng, step):
    """em_step defers the categorical counts to the M-step kernel (pc_categorical_em): the logits
    are bit for bit those of the counting kernel then the M-step kernel (an identity `reduce`
    asks for formed counts), and the torch backend's to 1e-5; with missing values, and runs of
    rows of unequal length (after prune)."""
    from pccompile.codegen.cpu.inputs import DeferredCounts

    from pccompile.learn.em import e_step, em_step

    x = pc.datasets.load_builtin("builtin:digits")[:300, :10]
    start = pc.compile(pc.build(hclt_from_tree(np.array([-1, 0, 0, 1, 1, 2, 2, 3, 4, 5]), 17, 6)), passes="init")
    pruned = pc.run_passes(start.to_circuit(), "prune{fraction=0.5}", data=x)
    ref, fused, split = (pc.compile(pruned, backend=b) for b in ("torch", "cpu", "cpu"))
    assert fused.program.input_partitions[0].run_length is None
    assert isinstance(e_step(fused, *fused.encode(_data(pruned, rng, 8)), deferred=True).inputs[0], DeferredCounts)
    for _ in range(2):
        data = _data(pruned, rng, 70)
        for model, reduce in ((ref, None), (fused, None), (split, lambda s: s)):
            em_step(model, *model.encode(data), step, 0.1, reduce=reduce)
    a, b, c = (m.inputs[0].logits.detach() for m in (ref, fused, split))
    assert torch.equal(b, c)
    torch.testing.assert_close(torch.softmax(b, 1), torch.softmax(a, 1), rtol=1e-5, atol=1e-6)
