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

from .base import Pass, register


@register
@dataclasses.dataclass(frozen=True)
class Vectorize(Pass):
    name = "vectorize"

    def run(self, circuit: Circuit) -> Circuit:
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


def _vectorize(circuit: Circuit) -> Circuit:
    depth = circuit.depths()
    levels: dict[int, list[int]] = defaultdict(list)
    for nid in circuit.reachable():
        levels[depth[nid]].append(nid)
    where: dict[int, tuple[int, int]] = {}  # old id -> (new id, row)
    nodes: dict[int, object] = {}
    params: dict[int, dict[str, np.ndarray]] = {}
    sizes: dict[int, int] = {}

    used: set[str] = set()

    def new_id() -> int:
        return len(nodes)

    def unique(name: str) -> str:
        base, k = name, 1
        while name in used:
            name, k = f"{base}_{k}", k + 1
        used.add(name)
        return name

    for d in sorted(levels):
        groups: dict[tuple, list[int]] = defaultdict(list)
        for nid in levels[d]:
            node = circuit.nodes[nid]
            if isinstance(node, InputNode):
                key = ("input", node.var, node.dist)
            else:
                vecs = tuple(sorted({where[c][0] for c in node.children}))
                if isinstance(node, ProductNode):
                    check_distinct_children(node, vecs)
                key = (node.kind, vecs)
            groups[key].append(nid)
        for key, members in groups.items():
            vid = new_id()
            first = circuit.nodes[members[0]]
            name = unique(first.name if len(members) == 1 else f"{key[0]}{vid}")
            n = len(members)
            if key[0] == "input":
                nodes[vid] = InputNode(vid, name, first.var, n, first.dist)
                have = [circuit.params.get(m) for m in members]
                if all(h is not None for h in have):
                    params[vid] = {k: np.concatenate([np.asarray(h[k], np.float32).reshape(1, *np.shape(h[k])[1:])
                                                      for h in have]) for k in have[0]}
            elif key[0] == "product":
                vecs = key[1]
                index = []
                for v in vecs:
                    rows = []
                    for m in members:
                        rows.append(next(where[c][1] for c in circuit.nodes[m].children if where[c][0] == v))
                    index.append(np.asarray(rows, dtype=np.int64))
                identity = all(sizes[v] == n and np.array_equal(ix, np.arange(n)) for v, ix in zip(vecs, index))
                nodes[vid] = ProductNode(vid, name, vecs, n, None if identity else tuple(index))
            else:
                vecs = key[1]
                offsets = np.cumsum([0] + [sizes[v] for v in vecs])
                col = {v: offsets[k] for k, v in enumerate(vecs)}
                width = int(offsets[-1])
                mask = np.zeros((n, width), dtype=bool)
                weights = np.zeros((n, width), dtype=np.float32)
                have_w = True
                for r, m in enumerate(members):
                    w = circuit.params.get(m, {}).get("weights")
                    have_w &= w is not None
                    for k, c in enumerate(circuit.nodes[m].children):
                        v, row = where[c]
                        mask[r, col[v] + row] = True
                        if w is not None:
                            weights[r, col[v] + row] = np.asarray(w).reshape(-1)[k]
                nodes[vid] = SumNode(vid, name, vecs, n, None if mask.all() else mask)
                if have_w:
                    params[vid] = {"weights": weights}
            sizes[vid] = n
            for r, m in enumerate(members):
                where[m] = (vid, r)
    root = where[circuit.root][0]
    return Circuit(circuit.variables, nodes, root, params, dict(circuit.meta))
