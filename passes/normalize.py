"""`normalize`: simplify structure without changing the distribution.

- `collapse` (a pass of its own, run after pruning; then normalize): sum-of-sum chains are collapsed: a sum read by exactly one other sum (and no tie) is folded
  into it, weights multiplied through (W_S[:, T] @ W_T), so pruning leaves no chains behind;
- a sum over a single child row (all its weight on one edge, as pruning can leave) becomes a
  product that copies that row, and disappears when it is an identity;
- dead-node elimination (keep only what the root reaches);
- single-child elementwise products are replaced by their child;
- product-of-product chains (elementwise, identity index) are flattened into one product.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
from pccompile.ir import Circuit, ProductNode, SumNode

from .base import Pass, PassContext, register


def _is_identity_product(node) -> bool:
    return isinstance(node, ProductNode) and node.index is None


@register
@dataclasses.dataclass(frozen=True)
class Normalize(Pass):
    """Dead nodes, single-child and chained elementwise products (see the module docstring);
    the default compile pipeline runs it, so it keeps a circuit's sums as written."""

    name = "normalize"

    def run(self, circuit: Circuit, ctx: PassContext | None = None) -> Circuit:
        nodes = dict(circuit.nodes)
        alias: dict[int, int] = {}

        def resolve(i: int) -> int:
            while i in alias:
                i = alias[i]
            return i

        for nid, node in list(nodes.items()):
            if isinstance(node, (ProductNode, SumNode)):
                children = tuple(resolve(c) for c in node.children)
                if _is_identity_product(node):
                    flat: list[int] = []
                    for c in children:
                        child = nodes[c]
                        flat.extend(child.children if _is_identity_product(child) else (c,))
                    children = tuple(flat)
                    if len(children) == 1 and nodes[children[0]].size == node.size and nid != circuit.root:
                        alias[nid] = children[0]
                        continue
                if children != node.children:
                    node = dataclasses.replace(node, children=children)
                nodes[nid] = node
        root = resolve(circuit.root)
        pruned = circuit.replace(nodes=nodes, root=root)
        keep = pruned.reachable()
        nodes = {i: nodes[i] for i in keep}
        params = {i: p for i, p in circuit.params.items() if i in nodes}
        regions = dict(circuit.regions)
        for nid, region in circuit.regions.items():  # a bypassed node's region moves to what replaced it
            if nid in alias:
                regions.setdefault(resolve(nid), region)
        return circuit.replace(nodes=nodes, root=root, params=params, regions=regions)


@register
@dataclasses.dataclass(frozen=True)
class Collapse(Pass):
    """Fold sum-of-sum chains and single-row sums, then normalize: what pruning leaves behind."""

    name = "collapse"

    def run(self, circuit: Circuit, ctx: PassContext | None = None) -> Circuit:
        return Normalize().run(_single_row_sums(_collapse_sum_chains(circuit)))


def _collapse_sum_chains(circuit: Circuit) -> Circuit:
    """Fold each sum T into the one sum S that reads it, when nothing else reads T, neither is
    tied or a tie source, T names no region, and both have weights: S reads T's children with
    weights W_S[:, T] @ W_T (a child S already reads gets the product added to its columns)."""
    readers = Counter(c for n in circuit.nodes.values() for c in n.children)
    tie_sources = {n.tie for n in circuit.nodes.values() if isinstance(n, SumNode) and n.tie is not None}
    nodes, params = dict(circuit.nodes), dict(circuit.params)

    def foldable(s, t) -> bool:
        return (
            isinstance(t, SumNode)
            and t.tie is None
            and t.id not in tie_sources
            and t.id != circuit.root
            and readers[t.id] == 1
            and t.id not in circuit.regions
            and t.id in params
            and s.id in params
        )

    for nid in list(nodes):
        s = nodes[nid]
        if not isinstance(s, SumNode) or s.tie is not None or nid in tie_sources:
            continue
        while True:
            t = next((nodes[c] for c in s.children if foldable(s, nodes[c])), None)
            if t is None:
                break
            s = _fold(nodes, params, s, t)
            nodes[nid] = s
    return circuit.replace(nodes=nodes, params=params)


def _columns(nodes, node) -> dict[int, np.ndarray]:
    out, start = {}, 0
    for c in node.children:
        out[c] = np.arange(start, start + nodes[c].size)
        start += nodes[c].size
    return out


def _fold(nodes, params, s: SumNode, t: SumNode) -> SumNode:
    """S with T's children in place of T (see _collapse_sum_chains)."""
    cols_s, cols_t = _columns(nodes, s), _columns(nodes, t)
    ws = np.where(_mask(nodes, s), np.asarray(params[s.id]["weights"], np.float64), 0.0)
    wt = np.where(_mask(nodes, t), np.asarray(params[t.id]["weights"], np.float64), 0.0)
    ms, mt = _mask(nodes, s).astype(np.float64), _mask(nodes, t).astype(np.float64)
    children = [c for c in s.children if c != t.id]
    children += [c for c in t.children if c not in children]
    width = sum(nodes[c].size for c in children)
    w, m = np.zeros((s.size, width)), np.zeros((s.size, width), bool)
    start = 0
    for c in children:
        size = nodes[c].size
        block = slice(start, start + size)
        if c in cols_s:
            w[:, block] += ws[:, cols_s[c]]
            m[:, block] |= ms[:, cols_s[c]] > 0
        if c in cols_t:
            w[:, block] += ws[:, cols_s[t.id]] @ wt[:, cols_t[c]]
            m[:, block] |= (ms[:, cols_s[t.id]] @ mt[:, cols_t[c]]) > 0
        start += size
    params[s.id] = {"weights": (w / w.sum(1, keepdims=True)).astype(np.float32)}
    del params[t.id]
    return dataclasses.replace(s, children=tuple(children), mask=None if m.all() else m)


def _mask(nodes, node: SumNode) -> np.ndarray:
    width = sum(nodes[c].size for c in node.children)
    return np.ones((node.size, width), bool) if node.mask is None else np.asarray(node.mask, bool)


def _single_row_sums(circuit: Circuit) -> Circuit:
    """A sum over one child row (child size 1) is a copy of it: a product indexing that row."""
    tie_sources = {n.tie for n in circuit.nodes.values() if isinstance(n, SumNode) and n.tie is not None}
    nodes, params = dict(circuit.nodes), dict(circuit.params)
    for nid, n in circuit.nodes.items():
        if (
            isinstance(n, SumNode)
            and nid != circuit.root
            and nid not in tie_sources
            and len(n.children) == 1
            and circuit.nodes[n.children[0]].size == 1
        ):
            index = None if n.size == 1 else (np.zeros(n.size, dtype=np.int64),)
            nodes[nid] = ProductNode(nid, n.name, n.children, n.size, index)
            params.pop(nid, None)
    return circuit.replace(nodes=nodes, params=params)
