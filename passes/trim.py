"""`trim`: remove the rows of node vectors that nothing reads.

Pruning removes edges, and with them readers: a row of a product vector whose every parent
edge is gone still costs its inputs, its product and its column in every sum that keeps a
masked-out edge to it. Trim walks the circuit from the root, marks the rows each live row
reads (a sum row: the columns its mask keeps; a product row: the child rows its index names),
and rebuilds every vector over its live rows only: input parameters, product indices, sum
weights and masks are cut and renumbered. The distribution is unchanged exactly (a dropped
column has weight 0 in every live row), and so are the node ids and regions.

Tied sums and their sources keep every row and read every child row, so their shared
parameters stay one shape.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import numpy as np
from pccompile.ir import Circuit, InputNode, ProductNode, SumNode
from pccompile.ir.limits import MAX_VECTOR_SIZE
from pccompile.ir.options import Range

from .base import Pass, PassContext, register


def live_rows(circuit: Circuit, block: int = 1) -> dict[int, np.ndarray]:
    """[size] bool per reachable node: the rows some live row of a parent reads (the root: all).
    With `block` > 1 a vector keeps whole blocks of `block` consecutive rows (a block with one
    live row stays, and reads what all its rows read)."""
    pinned = {n.id for n in circuit.nodes.values() if isinstance(n, SumNode) and n.tie is not None}
    pinned |= {circuit.nodes[i].tie for i in pinned}
    reachable = set(circuit.reachable())  # through ties too: a source only a tie reaches stays
    live = {i: np.ones(circuit.nodes[i].size, bool) for i in pinned & reachable}
    live[circuit.root] = np.ones(circuit.nodes[circuit.root].size, bool)
    for nid in reversed(list(circuit.nodes)):  # parents before children
        if nid not in live:
            continue
        n = circuit.nodes[nid]
        if nid in pinned:
            live[nid][:] = True
        elif block > 1:
            live[nid] = _whole_blocks(live[nid], block)
        for c, rows in _reads(circuit, n, live[nid], nid in pinned):
            mark = live.setdefault(c, np.zeros(circuit.nodes[c].size, bool))
            mark[rows] = True
    return live


def _whole_blocks(mask: np.ndarray, block: int) -> np.ndarray:
    """Each row marked when any row of its block is (no padding: a block may exceed the vector)."""
    if mask.size == 0:
        return mask
    starts = np.arange(0, mask.size, block)
    lengths = np.minimum(block, mask.size - starts)
    return np.repeat(np.logical_or.reduceat(mask, starts), lengths)


def _reads(circuit: Circuit, n, rows: np.ndarray, everything: bool):
    """(child id, child rows read) for the live `rows` of node n."""
    if isinstance(n, ProductNode):
        for k, c in enumerate(n.children):
            yield c, n.child_rows(k)[rows]
    elif isinstance(n, SumNode):
        width = [circuit.nodes[c].size for c in n.children]
        if n.mask is None or everything:
            used = np.ones(sum(width), bool) if rows.any() else np.zeros(sum(width), bool)
        else:
            used = np.asarray(n.mask, bool)[rows].any(0)
        offsets = np.cumsum([0, *width])
        for k, c in enumerate(n.children):
            yield c, np.flatnonzero(used[offsets[k] : offsets[k + 1]])


@register
@dataclasses.dataclass(frozen=True)
class Trim(Pass):
    """Remove the rows of node vectors that nothing reads (exact). `block`: remove only whole
    blocks of that many consecutive rows, so vector sizes stay multiples of it and the packer
    can still put vectors of one size into one partition (1: every row nothing reads)."""

    name = "trim"
    block: Annotated[int, Range(1, MAX_VECTOR_SIZE)] = 1

    def run(self, circuit: Circuit, ctx: PassContext | None = None) -> Circuit:
        live = {i: m for i, m in live_rows(circuit, self.block).items() if m.any()}  # a vector no row of reads: gone
        if all(live[i].all() for i in live) and len(live) == len(circuit.nodes):
            return circuit
        new_row = {i: np.cumsum(m) - 1 for i, m in live.items()}  # old row -> new row (where live)
        nodes, params = {}, {}
        for nid, n in circuit.nodes.items():
            if nid not in live:
                continue
            keep = live[nid]
            node = _renumbered(circuit, n, keep, live, new_row)
            nodes[nid] = node if keep.all() else dataclasses.replace(node, size=int(keep.sum()))
            if nid in circuit.params:
                params[nid] = _cut_params(circuit, n, circuit.params[nid], keep, live)
        regions = {i: r for i, r in circuit.regions.items() if i in nodes}
        return circuit.replace(nodes=nodes, params=params, regions=regions)


def _columns(circuit: Circuit, n: SumNode, live) -> np.ndarray:
    """[K] the columns of n that stay: the live rows of its live children."""
    return np.concatenate([live.get(c, np.zeros(circuit.nodes[c].size, bool)) for c in n.children])


def _renumbered(circuit: Circuit, n, keep: np.ndarray, live, new_row):
    """n over its live rows, reading its children's new row numbers."""
    if isinstance(n, ProductNode):
        index = []
        for k, c in enumerate(n.children):
            rows = new_row[c][n.child_rows(k)[keep]]
            same = rows.size == live[c].sum() and np.array_equal(rows, np.arange(rows.size))
            index.append(None if same else rows.astype(np.int64))
        return dataclasses.replace(n, index=None if all(i is None for i in index) else tuple(index))
    if isinstance(n, SumNode):
        children = tuple(c for c in n.children if c in live)
        if n.mask is None:
            return dataclasses.replace(n, children=children)
        mask = np.asarray(n.mask, bool)[keep][:, _columns(circuit, n, live)]
        return dataclasses.replace(n, children=children, mask=None if mask.all() else mask)
    return n


def _cut_params(circuit: Circuit, n, p, keep: np.ndarray, live) -> dict:
    if isinstance(n, InputNode):
        return {k: np.asarray(v)[keep] for k, v in p.items()}
    if isinstance(n, SumNode):
        return {"weights": np.asarray(p["weights"])[keep][:, _columns(circuit, n, live)]}
    return dict(p)
