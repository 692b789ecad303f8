"""`pack`: lay a LayerPlan out as a Program of padded partitions (the last lowering step).

Rows: every node vector gets a contiguous block of buffer rows, in execution order.
Sums become *groups* of G rows that share K child rows: a dense node vector is one group (a
batched matrix product). A masked one is either one group over all its children (masked edges
get the padding weight 0) or one group per distinct mask row over just that row's children,
whichever the cost model prices lower. A group of G rows over K children costs, per sample,
K reads of a child value (`read_cost` each, in matrix-unit multiply-adds) plus G*K
multiply-adds, each costing `scalar_mac_cost` in groups under `min_group` rows (no tl.dot tile).
So block-sparse masks become matrix-unit groups over their kept edges once sparse enough, and
per-edge-sparse ones pay for just their kept edges once very sparse. The constants are
estimates for an H100 (about 3 TB/s against about 400 TFLOP/s tf32) until measured. Groups of equal G are partitioned by fan-in K with the dynamic
program PyJuice uses: the fewest partitions (at most `max_partitions`) whose padded edge count
stays within (1 + tolerance) x the real edges.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

import numpy as np
from pccompile.ir import (
    FIRST_ROW,
    ONE_ROW,
    ZERO_ROW,
    Circuit,
    InputParamLayout,
    InputPartition,
    Layer,
    ProductPartition,
    Program,
    SumNode,
    SumParamLayout,
    SumPartition,
)
from pccompile.ir.limits import MAX_VECTOR_SIZE
from pccompile.ir.options import NonNegative, Range, check_fields

from .layer import LayerPlan, layer


@dataclass(frozen=True)
class PackOptions:
    tolerance: NonNegative = 0.5
    max_partitions: Annotated[int, Range(1, 4096)] = 16
    min_group: Annotated[int, Range(1, MAX_VECTOR_SIZE)] = 16  # rows a group needs for the matrix units (tl.dot tiles)
    read_cost: NonNegative = 64.0  # reading one child value, in matrix-unit multiply-adds
    scalar_mac_cost: NonNegative = 8.0  # a multiply-add in a group too small for the matrix units

    def __post_init__(self):
        check_fields(self, "packing option '{name}'")

    def group_cost(self, rows: int, children: int) -> float:
        mac = 1.0 if rows >= self.min_group else self.scalar_mac_cost
        return children * (rows * mac + self.read_cost)


def plan_partitions(
    fanins: np.ndarray, weights: np.ndarray, tolerance: float, max_partitions: int, pow2: bool = False
) -> list[tuple[int, np.ndarray]]:
    """Split items by fan-in into few partitions, each padded to its largest fan-in (its cap).

    Returns (cap, item indices) per partition. Minimises the number of partitions such that the
    padded cost sum(weight * cap) is within (1 + tolerance) of the real cost sum(weight * fanin);
    falls back to the cheapest split into `max_partitions`."""
    fanins = np.asarray(fanins, dtype=np.int64)
    weights = np.asarray(weights, dtype=np.float64)
    vals, inv = np.unique(fanins, return_inverse=True)
    caps = vals.astype(np.float64)
    if pow2:
        caps = 2.0 ** np.ceil(np.log2(np.maximum(caps, 1)))
    w = np.bincount(inv, weights=weights, minlength=vals.size)
    cw = np.concatenate([[0.0], np.cumsum(w)])
    real = float((fanins * weights).sum())
    u = vals.size
    # dp[j]: cheapest cost covering distinct values 0..j with k partitions; back[k][j]: split point.
    dp = cw[1:] * caps
    backs = [np.zeros(u, dtype=np.int64)]
    k = 1
    while dp[-1] > (1 + tolerance) * real + 1e-9 and k < min(max_partitions, u):
        new = np.full(u, np.inf)
        back = np.zeros(u, dtype=np.int64)
        for j in range(k, u):
            i = np.arange(k, j + 1)  # the last partition covers distinct values i..j
            cost = dp[i - 1] + (cw[j + 1] - cw[i]) * caps[j]
            b = int(np.argmin(cost))
            new[j], back[j] = cost[b], i[b]
        dp = new
        backs.append(back)
        k += 1
    bounds = []
    j = u - 1
    for kk in range(k - 1, -1, -1):
        lo = int(backs[kk][j]) if kk > 0 else 0
        bounds.append((lo, j))
        j = lo - 1
    out = []
    for lo, j in reversed(bounds):
        items = np.flatnonzero((inv >= lo) & (inv <= j))
        out.append((int(caps[j]), items))
    return out


def masked_groups(rows: np.ndarray, crow: np.ndarray, pid: np.ndarray, mask: np.ndarray, opt: PackOptions):
    """Groups for one masked sum node: ((G, False), (rows, child rows, weight ids)) items, by the
    cheapest of three layouts under `opt.group_cost`, each over only the children its rows use:
    one group of all rows (columns no row uses are dropped: column-pruned masks shrink K);
    blocks of `opt.min_group` consecutive rows (row-block structure); one group per distinct
    mask row (block-sparse masks in any row order, or very sparse ones)."""

    def over(sel_rows: np.ndarray, cols: np.ndarray):
        return (sel_rows.size, False), (rows[sel_rows], crow[cols], pid[sel_rows][:, cols])

    S = mask.shape[0]
    every = np.arange(S)
    layouts: list[list[tuple[np.ndarray, np.ndarray]]] = [[(every, np.asarray(mask.any(0)))]]
    if S > opt.min_group:
        blocks = [every[a : a + opt.min_group] for a in range(0, S, opt.min_group)]
        layouts.append([(b, np.asarray(mask[b].any(0))) for b in blocks])
    patterns, inverse = np.unique(mask, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    layouts.append([(np.flatnonzero(inverse == k), sel) for k, sel in enumerate(patterns)])
    cost = [sum(opt.group_cost(int(r.size), int(c.sum())) for r, c in lay) for lay in layouts]
    return [over(r, c) for r, c in layouts[int(np.argmin(cost))]]


class _Rows:
    """Hands out buffer rows in execution order: each node vector gets a contiguous block."""

    def __init__(self) -> None:
        self.next = FIRST_ROW
        self.of: dict[int, tuple[int, int]] = {}  # node id -> (first row, size)

    def alloc(self, node_id: int, size: int) -> np.ndarray:
        self.of[node_id] = (self.next, size)
        self.next += size
        return np.arange(self.next - size, self.next)

    def rows(self, node_id: int) -> np.ndarray:
        first, size = self.of[node_id]
        return np.arange(first, first + size)


def pack_inputs(circuit: Circuit, plan: LayerPlan, rows: _Rows) -> tuple[Layer, list[InputParamLayout]]:
    """The input layer: one partition per (family, category count), rows in plan order."""
    by_kind: dict[tuple, list[int]] = {}
    for i in plan.inputs:
        n = circuit.nodes[i]
        by_kind.setdefault((n.dist.name, n.dist.num_cats), []).append(i)
    parts: list[InputPartition] = []
    layout: list[InputParamLayout] = []
    for (dist, k), ids in by_kind.items():
        start, local, vars_ = rows.next, 0, []
        for i in ids:
            n = circuit.nodes[i]
            rows.alloc(i, n.size)
            layout.append(InputParamLayout(i, len(parts), local, n.size))
            vars_.append(np.full(n.size, n.var, dtype=np.int64))
            local += n.size
        parts.append(InputPartition(dist, k, start, np.concatenate(vars_)))
    return Layer("input", tuple(parts)), layout


@dataclass
class SumParams:
    """The flat vector of sum weights: dense node vectors first, sorted by width so equal widths
    form row-major blocks (`blocks`: (start, end, width)), then masked ones (the tail, one
    segment per kept edge's row). `table[node] = (offset, mask or None)`; `num` is the padding id."""

    layout: list[SumParamLayout]
    table: dict[int, tuple[int, np.ndarray | None]]
    blocks: list[tuple[int, int, int]]
    tail_start: int
    tail_segments: list[np.ndarray]
    tail_rows: int
    num: int

    @classmethod
    def of(cls, circuit: Circuit, reach: set[int]) -> "SumParams":
        nodes = circuit.nodes
        owners = [i for i, n in nodes.items() if isinstance(n, SumNode) and n.tie is None and i in reach]
        dense = sorted((i for i in owners if nodes[i].mask is None), key=lambda i: circuit.child_size(nodes[i]))
        layout: list[SumParamLayout] = []
        table: dict[int, tuple[int, np.ndarray | None]] = {}
        blocks: list[tuple[int, int, int]] = []
        segments: list[np.ndarray] = []
        offset = tail_rows = 0
        for i in dense:
            n, width = nodes[i], circuit.child_size(nodes[i])
            layout.append(SumParamLayout(i, offset, n.size, width, None))
            table[i] = (offset, None)
            if blocks and blocks[-1][2] == width and blocks[-1][1] == offset:
                blocks[-1] = (blocks[-1][0], offset + n.size * width, width)
            else:
                blocks.append((offset, offset + n.size * width, width))
            offset += n.size * width
        tail_start = offset
        for i in (i for i in owners if nodes[i].mask is not None):
            n, mask = nodes[i], np.asarray(nodes[i].mask, bool)
            layout.append(SumParamLayout(i, offset, n.size, mask.shape[1], mask))
            table[i] = (offset, mask)
            segments.append(np.repeat(np.arange(tail_rows, tail_rows + n.size), mask.sum(1)))
            offset += int(mask.sum())
            tail_rows += n.size
        return cls(layout, table, blocks, tail_start, segments, tail_rows, offset)

    def ids(self, circuit: Circuit, n: SumNode) -> np.ndarray:
        """[size, K] weight ids of a (possibly tied) sum node; `num` where it has no edge."""
        off, mask = self.table[circuit.param_source(n).id]
        if mask is None:  # a node with an all-true mask tied to a dense source
            mask = circuit.edge_mask(n)
        pid = np.full(mask.shape, self.num, dtype=np.int64)
        pid[mask] = off + np.arange(int(mask.sum()))
        return pid


def pack_products(circuit: Circuit, prods: Sequence[int], rows: _Rows, opt: PackOptions) -> Layer:
    """A product layer: partitions by fan-in (plan_partitions), padded with ONE_ROW."""
    items = []  # (rows [n], child rows [n, F])
    for i in prods:
        n = circuit.nodes[i]
        r = rows.alloc(i, n.size)
        ch = np.stack([rows.of[c][0] + n.child_rows(k) for k, c in enumerate(n.children)], 1)
        items.append((r, ch))
    fan = np.array([it[1].shape[1] for it in items])
    wts = np.array([it[1].shape[0] for it in items])
    parts = []
    for cap, idx in plan_partitions(fan, wts, opt.tolerance, opt.max_partitions):
        out_rows = np.concatenate([items[j][0] for j in idx])
        ch = np.full((out_rows.size, cap), ONE_ROW, dtype=np.int64)
        at = 0
        for j in idx:
            c = items[j][1]
            ch[at : at + c.shape[0], : c.shape[1]] = c
            at += c.shape[0]
        parts.append(ProductPartition(out_rows, ch, int(sum(items[j][1].size for j in idx))))
    return Layer("product", tuple(parts))


def pack_sums(circuit: Circuit, sums: Sequence[int], rows: _Rows, params: SumParams, opt: PackOptions) -> Layer:
    """A sum layer: node vectors as groups (dense ones addressed by start and fan-in, masked ones
    by explicit ids, laid out by `masked_groups`), partitioned by fan-in per group size."""
    groups: dict[tuple[int, bool], list[tuple]] = {}
    for i in sums:
        n = circuit.nodes[i]
        r = rows.alloc(i, n.size)
        crow = np.concatenate([rows.rows(c) for c in n.children])
        if n.mask is None:
            groups.setdefault((n.size, True), []).append((r, crow, params.table[circuit.param_source(n).id][0]))
        else:
            for key, item in masked_groups(r, crow, params.ids(circuit, n), np.asarray(n.mask, bool), opt):
                groups.setdefault(key, []).append(item)
    parts = []
    for (g_size, dense), items in groups.items():
        fan = np.array([len(it[1]) for it in items])
        for cap, idx in plan_partitions(fan, np.full(len(items), g_size), opt.tolerance, opt.max_partitions):
            parts.append(_sum_partition([items[j] for j in idx], fan[idx], g_size, cap, dense, params.num))
    return Layer("sum", tuple(parts))


def _sum_partition(items: list[tuple], fan: np.ndarray, g_size: int, cap: int, dense: bool, num: int) -> SumPartition:
    out_rows = np.stack([it[0] for it in items])
    ch = np.full((len(items), cap), ZERO_ROW, dtype=np.int64)
    for r, it in enumerate(items):
        ch[r, : len(it[1])] = it[1]
    if dense:
        return SumPartition(
            out_rows,
            ch,
            int(fan.sum()) * g_size,
            param_start=np.array([it[2] for it in items], dtype=np.int64),
            fanin=fan.astype(np.int64),
        )
    pids = np.full((len(items), g_size, cap), num, dtype=np.int64)
    real = 0
    for r, it in enumerate(items):
        pids[r, :, : len(it[1])] = it[2]
        real += int((it[2] < num).sum())
    return SumPartition(out_rows, ch, real, param_ids=pids)


def pack(circuit: Circuit, plan: LayerPlan | None = None, options: PackOptions | None = None) -> Program:
    """The Program of a circuit: the input layer, the flat sum weights, then each level's
    product and sum layers."""
    plan = plan or layer(circuit)
    opt = options or PackOptions()
    rows = _Rows()
    input_layer, in_layout = pack_inputs(circuit, plan, rows)
    layers = [input_layer]
    params = SumParams.of(circuit, set(rows.of) | {i for lv in plan.levels for grp in lv for i in grp})
    for prods, sums in plan.levels:
        if prods:
            layers.append(pack_products(circuit, prods, rows, opt))
        if sums:
            layers.append(pack_sums(circuit, sums, rows, params, opt))
    var_cats = np.array([-1 if v.domain.count else v.domain.num_cats or 0 for v in circuit.variables], dtype=np.int64)
    segments = params.tail_segments
    return Program(
        num_rows=rows.next,
        root_row=rows.of[circuit.root][0],
        var_cats=var_cats,
        var_names=tuple(v.name for v in circuit.variables),
        layers=tuple(layers),
        num_sum_params=params.num,
        dense_blocks=tuple(params.blocks),
        tail_start=params.tail_start,
        tail_segment=np.concatenate(segments) if segments else np.zeros(0, dtype=np.int64),
        tail_rows=params.tail_rows,
        sum_layout=tuple(params.layout),
        input_layout=tuple(in_layout),
        node_rows=rows.of,
    )
