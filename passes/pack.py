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

from dataclasses import dataclass

import numpy as np

from pccompile.ir import (FIRST_ROW, ONE_ROW, ZERO_ROW, Circuit, InputParamLayout, InputPartition, Layer,
                          ProductPartition, Program, SumNode, SumParamLayout, SumPartition)

from .layer import LayerPlan, layer


@dataclass(frozen=True)
class PackOptions:
    tolerance: float = 0.5
    max_partitions: int = 16
    min_group: int = 16  # rows a group needs for the matrix units (tl.dot tiles)
    read_cost: float = 64.0  # reading one child value, in matrix-unit multiply-adds
    scalar_mac_cost: float = 8.0  # a multiply-add in a group too small for the matrix units

    def group_cost(self, rows: int, children: int) -> float:
        mac = 1.0 if rows >= self.min_group else self.scalar_mac_cost
        return children * (rows * mac + self.read_cost)
    pow2: bool = False


def plan_partitions(fanins: np.ndarray, weights: np.ndarray, tolerance: float, max_partitions: int,
                    pow2: bool = False) -> list[tuple[int, np.ndarray]]:
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
        i = int(backs[kk][j]) if kk > 0 else 0
        bounds.append((i, j))
        j = i - 1
    out = []
    for i, j in reversed(bounds):
        items = np.flatnonzero((inv >= i) & (inv <= j))
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
    layouts = [[(every, mask.any(0))]]
    if S > opt.min_group:
        blocks = [every[a:a + opt.min_group] for a in range(0, S, opt.min_group)]
        layouts.append([(b, mask[b].any(0)) for b in blocks])
    patterns, inverse = np.unique(mask, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    layouts.append([(np.flatnonzero(inverse == k), sel) for k, sel in enumerate(patterns)])
    cost = [sum(opt.group_cost(int(r.size), int(c.sum())) for r, c in lay) for lay in layouts]
    return [over(r, c) for r, c in layouts[int(np.argmin(cost))]]


def pack(circuit: Circuit, plan: LayerPlan | None = None, options: PackOptions | None = None) -> Program:
    plan = plan or layer(circuit)
    opt = options or PackOptions()
    nodes = circuit.nodes
    node_rows: dict[int, tuple[int, int]] = {}
    next_row = FIRST_ROW

    # -- input layer: one partition per (family, categories) ------------------------------
    by_kind: dict[tuple, list[int]] = {}
    for i in plan.inputs:
        n = nodes[i]
        by_kind.setdefault((n.dist.name, n.dist.num_cats), []).append(i)
    in_parts, in_layout = [], []
    for (dist, k), ids in by_kind.items():
        start, local = next_row, 0
        vars_ = []
        for i in ids:
            n = nodes[i]
            node_rows[i] = (next_row, n.size)
            in_layout.append(InputParamLayout(i, len(in_parts), local, n.size))
            vars_.append(np.full(n.size, n.var, dtype=np.int64))
            next_row += n.size
            local += n.size
        in_parts.append(InputPartition(dist, k, start, np.concatenate(vars_)))
    layers = [Layer("input", tuple(in_parts))]

    # -- flat sum parameters: dense nodes first, grouped by width, then masked ones -----------
    reach = set(node_rows) | {i for lv in plan.levels for grp in lv for i in grp}
    owners = [i for i, n in nodes.items() if isinstance(n, SumNode) and n.tie is None and i in reach]
    dense = sorted((i for i in owners if nodes[i].mask is None), key=lambda i: circuit.child_size(nodes[i]))
    masked = [i for i in owners if nodes[i].mask is not None]
    sum_layout, pid_table, blocks, tail_segs = [], {}, [], []
    offset = rows_in_tail = 0
    for i in dense:
        n = nodes[i]
        width = circuit.child_size(n)
        sum_layout.append(SumParamLayout(i, offset, n.size, width, None))
        pid_table[i] = (offset, None)
        if blocks and blocks[-1][2] == width and blocks[-1][1] == offset:
            blocks[-1] = (blocks[-1][0], offset + n.size * width, width)
        else:
            blocks.append((offset, offset + n.size * width, width))
        offset += n.size * width
    tail_start = offset
    for i in masked:
        n = nodes[i]
        mask = np.asarray(n.mask, bool)
        sum_layout.append(SumParamLayout(i, offset, n.size, mask.shape[1], mask))
        pid_table[i] = (offset, mask)
        tail_segs.append(np.repeat(np.arange(rows_in_tail, rows_in_tail + n.size), mask.sum(1)))
        offset += int(mask.sum())
        rows_in_tail += n.size
    num_params = offset

    def param_ids(n: SumNode) -> np.ndarray:
        off, mask = pid_table[circuit.param_source(n).id]
        if mask is None:  # a node with an all-true mask tied to a dense source
            mask = circuit.edge_mask(n)
        pid = np.full(mask.shape, num_params, dtype=np.int64)
        pid[mask] = off + np.arange(int(mask.sum()))
        return pid

    def child_rows_of(n) -> np.ndarray:
        return np.concatenate([np.arange(node_rows[c][0], node_rows[c][0] + node_rows[c][1]) for c in n.children])

    # -- inner levels ---------------------------------------------------------------------------
    for prods, sums in plan.levels:
        if prods:
            items = []  # (rows [n], child rows [n, F])
            for i in prods:
                n = nodes[i]
                node_rows[i] = (next_row, n.size)
                rows = np.arange(next_row, next_row + n.size)
                next_row += n.size
                ch = np.stack([node_rows[c][0] + n.child_rows(k) for k, c in enumerate(n.children)], 1)
                items.append((rows, ch))
            fan = np.array([it[1].shape[1] for it in items])
            wts = np.array([it[1].shape[0] for it in items])
            parts = []
            for cap, idx in plan_partitions(fan, wts, opt.tolerance, opt.max_partitions, opt.pow2):
                rows = np.concatenate([items[j][0] for j in idx])
                ch = np.full((rows.size, cap), ONE_ROW, dtype=np.int64)
                r = 0
                for j in idx:
                    c = items[j][1]
                    ch[r:r + c.shape[0], :c.shape[1]] = c
                    r += c.shape[0]
                parts.append(ProductPartition(rows, ch, int(sum(items[j][1].size for j in idx))))
            layers.append(Layer("product", tuple(parts)))
        if sums:
            # groups by (G, addressing): dense items carry (start, fan-in), others explicit ids
            groups: dict[tuple[int, bool], list[tuple]] = {}
            for i in sums:
                n = nodes[i]
                node_rows[i] = (next_row, n.size)
                rows = np.arange(next_row, next_row + n.size)
                next_row += n.size
                crow = child_rows_of(n)
                src = circuit.param_source(n)
                mask = None if n.mask is None else np.asarray(n.mask, bool)
                if mask is None:
                    groups.setdefault((n.size, True), []).append((rows, crow, pid_table[src.id][0]))
                else:
                    for key, item in masked_groups(rows, crow, param_ids(n), mask, opt):
                        groups.setdefault(key, []).append(item)
            parts = []
            for (g_size, dense), items in groups.items():
                fan = np.array([len(it[1]) for it in items])
                wts = np.full(len(items), g_size)
                for cap, idx in plan_partitions(fan, wts, opt.tolerance, opt.max_partitions, opt.pow2):
                    rows = np.stack([items[j][0] for j in idx])
                    ch = np.full((idx.size, cap), ZERO_ROW, dtype=np.int64)
                    for r, j in enumerate(idx):
                        ch[r, :len(items[j][1])] = items[j][1]
                    if dense:
                        parts.append(SumPartition(rows, ch, int(fan[idx].sum()) * g_size,
                                                  param_start=np.array([items[j][2] for j in idx], dtype=np.int64),
                                                  fanin=fan[idx].astype(np.int64)))
                        continue
                    pids = np.full((idx.size, g_size, cap), num_params, dtype=np.int64)
                    real = 0
                    for r, j in enumerate(idx):
                        pids[r, :, :len(items[j][1])] = items[j][2]
                        real += int((items[j][2] < num_params).sum())
                    parts.append(SumPartition(rows, ch, real, param_ids=pids))
            layers.append(Layer("sum", tuple(parts)))

    var_cats = np.array([v.domain.num_cats or 0 for v in circuit.variables], dtype=np.int64)
    return Program(
        num_rows=next_row, root_row=node_rows[circuit.root][0], var_cats=var_cats,
        var_names=tuple(v.name for v in circuit.variables), layers=tuple(layers),
        num_sum_params=num_params, dense_blocks=tuple(blocks), tail_start=tail_start,
        tail_segment=np.concatenate(tail_segs) if tail_segs else np.zeros(0, dtype=np.int64),
        tail_rows=rows_in_tail, sum_layout=tuple(sum_layout), input_layout=tuple(in_layout), node_rows=node_rows)
