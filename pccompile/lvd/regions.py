"""Which latent variables a circuit has, read off its structure (docs/lvd.md).

An elementwise product ties its factors: their rows are the states of one latent (in an HCLT, a
variable's input vector, its children's message sums and the product itself are all Z_v). Every
other sum or input vector starts a latent of its own, one state per row. A product with row
indices (an outer product) stands for a tuple of its factors' latents. So each sum vector has a
row latent (its node) and, per child vector, the latents whose states pick the child row: what
counting on completed data (x, z) needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pccompile.ir import Circuit, InputNode, ProductNode, StructureError, SumNode


@dataclass(frozen=True)
class Latent:
    """One latent variable: `size` states, the rows of `vectors`; `variables` is the region
    whose embedding assigns it (the structure's annotation, else the vectors' scope)."""

    id: int
    name: str
    size: int
    variables: tuple[int, ...]
    vectors: tuple[int, ...]


@dataclass(frozen=True)
class ChildLatents:
    """A sum's child vector: its columns start at `offset`; row r of the child is the state
    combination `states[r]` of `latents`."""

    child: int
    offset: int
    latents: tuple[int, ...]
    states: np.ndarray  # [child size, len(latents)]


@dataclass(frozen=True)
class SumLatents:
    node: int
    rows: int  # the latent whose state picks the node
    children: tuple[ChildLatents, ...]


@dataclass(frozen=True)
class RegionMap:
    latents: tuple[Latent, ...]
    sums: dict[int, SumLatents]  # every sum vector
    inputs: dict[int, int]  # input vector -> the latent of its rows


class _Classes:
    """Union-find over node ids."""

    def __init__(self):
        self.parent: dict[int, int] = {}

    def find(self, a: int) -> int:
        self.parent.setdefault(a, a)
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: int, b: int) -> None:
        self.parent[self.find(a)] = self.find(b)


def _is_elementwise(n: ProductNode) -> bool:
    return n.index is None or all(ix is None for ix in n.index)


def region_map(circuit: Circuit) -> RegionMap:
    """The latents of every sum and input vector of `circuit`; raises StructureError, naming the
    node, where a product's row would need two states of one latent at once."""
    nodes = circuit.nodes
    classes, composite = _Classes(), set()
    for i in circuit.reachable():
        n = nodes[i]
        classes.find(i)
        if isinstance(n, ProductNode):
            if _is_elementwise(n) and not any(c in composite for c in n.children):
                for c in n.children:
                    classes.union(i, c)
            else:
                composite.add(i)
    latents = _latents(circuit, classes, composite)
    of_class = {classes.find(v): lat.id for lat in latents for v in lat.vectors}
    memo: dict[int, tuple[tuple[int, ...], np.ndarray]] = {}

    def rows_of(i: int):
        if i not in memo:
            memo[i] = _row_states(circuit, i, composite, of_class, classes, rows_of)
        return memo[i]

    sums, inputs = {}, {}
    for i in circuit.reachable():
        n = nodes[i]
        if isinstance(n, InputNode):
            inputs[i] = of_class[classes.find(i)]
        elif isinstance(n, SumNode):
            kids, offset = [], 0
            for c in n.children:
                lats, states = rows_of(c)
                kids.append(ChildLatents(c, offset, lats, states))
                offset += nodes[c].size
            sums[i] = SumLatents(i, of_class[classes.find(i)], tuple(kids))
    return RegionMap(tuple(latents), sums, inputs)


def _latents(circuit: Circuit, classes: _Classes, composite: set[int]) -> list[Latent]:
    members: dict[int, list[int]] = {}
    for i in circuit.reachable():
        if i not in composite:
            members.setdefault(classes.find(i), []).append(i)
    scopes = circuit.scopes()
    out = []
    for vecs in members.values():
        annotated = [circuit.regions[v] for v in vecs if v in circuit.regions]
        if annotated:
            name, variables = annotated[0].name, tuple(annotated[0].variables)
        else:
            scope = frozenset().union(*(scopes[v] for v in vecs))
            name, variables = f"Z_{circuit.nodes[vecs[0]].name}", tuple(sorted(scope))
        out.append(Latent(len(out), name, circuit.nodes[vecs[0]].size, variables, tuple(vecs)))
    return out


def _row_states(circuit, i, composite, of_class, classes, rows_of):
    """(latents, states [size, len(latents)]) of node i's rows."""
    n = circuit.nodes[i]
    if i not in composite:
        return (of_class[classes.find(i)],), np.arange(n.size)[:, None]
    lats: list[int] = []
    cols: list[np.ndarray] = []
    for k, c in enumerate(n.children):
        child_lats, child_states = rows_of(c)
        picked = child_states[n.child_rows(k)]
        for j, lat in enumerate(child_lats):
            if lat in lats:
                if not np.array_equal(cols[lats.index(lat)], picked[:, j]):
                    raise StructureError(n.name, "a row combines two states of one latent variable")
                continue
            lats.append(lat)
            cols.append(picked[:, j])
    return tuple(lats), np.stack(cols, 1)
