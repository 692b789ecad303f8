"""`vectorize`: pack a scalar circuit (every node of size 1) into node vectors.

Scalar nodes of one kind are merged when their children come from the same child vectors:
inputs over the same variable and family; products over the same set of child vectors (one row
each, expressed with index arrays); sums over the same set of child vectors (weights become one
matrix, with a mask where a scalar sum lacks an edge). Nodes merge only within one depth level,
so every child is already vectorised. Circuits holding any node of size > 1 are left alone.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict

import numpy as np
from pccompile.ir import Circuit, DecomposabilityError, InputNode, ProductNode, SumNode

from .base import Pass, PassContext, register


@register
@dataclasses.dataclass(frozen=True)
class Vectorize(Pass):
    name = "vectorize"

    def run(self, circuit: Circuit, ctx: PassContext | None = None) -> Circuit:
        if any(n.size != 1 for n in circuit.nodes.values()):
            return circuit
        if any(isinstance(n, SumNode) and n.tie is not None for n in circuit.nodes.values()):
            return circuit
        return _vectorize(circuit)


def check_distinct_children(node: ProductNode, vecs: tuple[int, ...]) -> None:
    """Two children of a product in one vector share a scope, and keying the product on its set
    of child vectors would drop one of them: refuse (verify does too, before any pass)."""
    if len(vecs) != len(node.children):
        raise DecomposabilityError(node.name, "two of its children are over the same variables")


class _Packer:
    """The vectorised circuit under construction: `where[old id] = (new id, row)`, the new
    nodes, parameters and sizes, and the names taken."""

    def __init__(self, circuit: Circuit):
        self.c = circuit
        self.where: dict[int, tuple[int, int]] = {}
        self.nodes: dict[int, object] = {}
        self.params: dict[int, dict[str, np.ndarray]] = {}
        self.sizes: dict[int, int] = {}
        self.used: set[str] = set()
        self.regions: dict = {}

    def key(self, nid: int) -> tuple:
        """Scalar nodes with equal keys (at one depth) become one node vector."""
        node = self.c.nodes[nid]
        if isinstance(node, InputNode):
            return ("input", node.var, node.dist)
        vecs = tuple(sorted({self.where[c][0] for c in node.children}))
        if isinstance(node, ProductNode):
            check_distinct_children(node, vecs)
        return (node.kind, vecs)

    def unique(self, name: str) -> str:
        base, k = name, 1
        while name in self.used:
            name, k = f"{base}_{k}", k + 1
        self.used.add(name)
        return name

    def merge(self, key: tuple, members: list[int]) -> None:
        vid = len(self.nodes)
        first = self.c.nodes[members[0]]
        name = self.unique(first.name if len(members) == 1 else f"{key[0]}{vid}")
        {"input": self.inputs, "product": self.products, "sum": self.sums}[key[0]](vid, name, key, members)
        self.sizes[vid] = len(members)
        for r, m in enumerate(members):
            self.where[m] = (vid, r)
        regions = {self.c.regions.get(m) for m in members}
        if len(regions) == 1 and None not in regions:
            self.regions[vid] = regions.pop()

    def inputs(self, vid: int, name: str, key: tuple, members: list[int]) -> None:
        """One input vector; its parameters stacked row by row when every member has them."""
        first = self.c.nodes[members[0]]
        self.nodes[vid] = InputNode(vid, name, first.var, len(members), first.dist)
        have = [self.c.params.get(m) for m in members]
        if all(h is not None for h in have):
            self.params[vid] = {
                k: np.concatenate([np.asarray(h[k], np.float32).reshape(1, *np.shape(h[k])[1:]) for h in have])
                for k in have[0]
            }

    def products(self, vid: int, name: str, key: tuple, members: list[int]) -> None:
        """One product vector over the child vectors, with a row index per child vector (left out
        when every child is read elementwise)."""
        vecs, n = key[1], len(members)
        index = [
            np.asarray(
                [next(self.where[c][1] for c in self.c.nodes[m].children if self.where[c][0] == v) for m in members],
                dtype=np.int64,
            )
            for v in vecs
        ]
        identity = all(self.sizes[v] == n and np.array_equal(ix, np.arange(n)) for v, ix in zip(vecs, index))
        self.nodes[vid] = ProductNode(vid, name, vecs, n, None if identity else tuple(index))

    def sums(self, vid: int, name: str, key: tuple, members: list[int]) -> None:
        """One sum vector over all rows of the child vectors: a mask where a member lacks an
        edge, and its weights placed at the matching columns."""
        vecs, n = key[1], len(members)
        offsets = np.cumsum([0] + [self.sizes[v] for v in vecs])
        col = {v: offsets[k] for k, v in enumerate(vecs)}
        mask = np.zeros((n, int(offsets[-1])), dtype=bool)
        weights = np.zeros(mask.shape, dtype=np.float32)
        have_w = True
        for r, m in enumerate(members):
            w = self.c.params.get(m, {}).get("weights")
            have_w &= w is not None
            for k, c in enumerate(self.c.nodes[m].children):
                v, row = self.where[c]
                mask[r, col[v] + row] = True
                if w is not None:
                    weights[r, col[v] + row] = np.asarray(w).reshape(-1)[k]
        self.nodes[vid] = SumNode(vid, name, vecs, n, None if mask.all() else mask)
        if have_w:
            self.params[vid] = {"weights": weights}


def _vectorize(circuit: Circuit) -> Circuit:
    """Merge level by level (children first), so every child is already in its vector."""
    depth = circuit.depths()
    levels: dict[int, list[int]] = defaultdict(list)
    for nid in circuit.reachable():
        levels[depth[nid]].append(nid)
    packer = _Packer(circuit)
    for d in sorted(levels):
        groups: dict[tuple, list[int]] = defaultdict(list)
        for nid in levels[d]:
            groups[packer.key(nid)].append(nid)
        for key, members in groups.items():
            packer.merge(key, members)
    root = packer.where[circuit.root][0]
    return Circuit(circuit.variables, packer.nodes, root, packer.params, dict(circuit.meta), packer.regions)
