"""The parts of lowering and emission on their own: pack's input layer and flat sum weights,
the Triton emitter's fusion plan and launch plan; and the size rule for functions."""

import ast
from pathlib import Path

import numpy as np
import pytest
from pccompile.codegen.fusion import plan_fusion
from pccompile.codegen.triton.emitter import TritonOptions, plan_launches
from pccompile.ir import ONE_ROW, ZERO_ROW, ProductPartition
from pccompile.passes import layer, lower
from pccompile.passes.pack import SumParams, _Rows, pack_inputs

import pccompile as pc

ROOT = Path(__file__).resolve().parent.parent


def _circuit(text):
    return pc.compile(text).circuit


MIXED = """var a : binary
var b : categorical(3)
var c : categorical(3)
la[2] = bernoulli(a)
lb[2] = categorical(b)
lc[2] = categorical(c)
p = product(la, lb, lc)
wide[3] = sum(p, p)
narrow[2] = sum(p)
narrow2[2] = sum(p, mask=[[1, 0], [1, 1]])
tied[2] = sum(p, tie=narrow)
root = sum(wide, narrow, narrow2, tied)
"""


def test_pack_inputs_makes_one_partition_per_family_and_category_count():
    circuit = _circuit(MIXED)
    rows = _Rows()
    lay, layout = pack_inputs(circuit, layer(circuit), rows)
    assert [(p.dist, p.num_cats, p.size) for p in lay.partitions] == [("bernoulli", 2, 2), ("categorical", 3, 4)]
    assert lay.partitions[1].vars.tolist() == [1, 1, 2, 2]
    assert [(lo.partition, lo.start, lo.size) for lo in layout] == [(0, 0, 2), (1, 0, 2), (1, 2, 2)]
    assert rows.next == 2 + 6


def test_sum_params_put_dense_vectors_first_by_width_and_tied_sums_share_ids():
    circuit = _circuit(MIXED)
    params = SumParams.of(circuit, set(circuit.nodes))
    by = {circuit.nodes[lo.node].name: lo for lo in params.layout}
    widths = [by[n].width for n in ("narrow", "wide", "root")]
    assert widths == [2, 4, 9] and params.layout[-1].mask is not None  # dense by width, masked last
    assert [b[2] for b in params.blocks] == [2, 4, 9]
    assert params.num == 2 * 2 + 3 * 4 + 1 * 9 + 3  # dense entries plus the mask's three edges
    assert params.tail_start == params.num - 3 and params.tail_segments[0].tolist() == [0, 1, 1]
    narrow, tied = (circuit.by_name(n) for n in ("narrow", "tied"))
    np.testing.assert_array_equal(params.ids(circuit, tied), params.ids(circuit, narrow))
    masked = params.ids(circuit, circuit.by_name("narrow2"))
    assert masked[0, 1] == params.num  # no edge: the padding id


@pytest.mark.parametrize("fuse", [True, False])
def test_the_fusion_plan_reads_each_products_factors(fuse):
    program = lower(_circuit(open(ROOT / "examples/hmm.pc").read()))
    plan = plan_fusion(program, fuse)
    if not fuse:
        assert not plan.skip and not plan.children
        return
    assert plan.skip and plan.children
    for (li, pi), comp in plan.children.items():
        prods = program.layers[li - 1]
        assert prods.kind == "product" and program.layers[li].kind == "sum"
        factors = {int(r): p.child_rows[k] for p in prods.partitions for k, r in enumerate(p.rows)}
        ch = program.layers[li].partitions[pi].child_rows
        for g in range(ch.shape[0]):
            for k in range(ch.shape[1]):
                got = comp[g, k]
                if ch[g, k] == ZERO_ROW:
                    assert got[0] == ZERO_ROW and np.all(got[1:] == ONE_ROW)
                else:
                    want = factors[int(ch[g, k])]
                    assert np.array_equal(got[: want.size], want) and np.all(got[want.size :] == ONE_ROW)


def test_the_launch_plan_has_one_launch_per_partition_and_a_max_row_per_group():
    program = lower(_circuit(MIXED))
    arrays = []
    perm = np.arange(program.num_rows)
    launches, end = plan_launches(
        program, TritonOptions(), plan_fusion(program), perm, 100, lambda a: arrays.append(a) or len(arrays) - 1
    )
    parts = [(li, p) for li, lay in enumerate(program.layers[1:], 1) for p in lay.partitions]
    assert [L.layer for L in launches] == [li for li, _ in parts]
    sums = [(L, p) for L, (_, p) in zip(launches, parts) if L.kind == "sum"]
    assert [L.meta["MROW"] for L, _ in sums] == list(np.cumsum([0] + [p.shape[0] for _, p in sums])[:-1] + 100)
    assert end == 100 + sum(p.shape[0] for _, p in sums)
    assert all(isinstance(p, ProductPartition) for L, (_, p) in zip(launches, parts) if L.kind == "prod")


def test_no_function_in_the_compiler_is_over_80_lines():
    long = []
    for folder in ("pccompile", "ir", "passes", "codegen"):
        for f in (ROOT / folder).rglob("*.py"):
            for n in ast.walk(ast.parse(f.read_text())):
                if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno >= 80:
                    long.append(f"{f.relative_to(ROOT)}:{n.lineno} {n.name}")
    assert not long, long
