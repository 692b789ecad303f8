"""IR node vectors. Each node stands for `size` scalar PC nodes of one kind over one scope.

Structure only: parameters (sum weights, input distribution parameters) live in the circuit's
parameter table, keyed by node id, so passes can rewrite them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .distributions import Distribution


@dataclass(frozen=True, eq=False)
class InputNode:
    """`size` distributions of family `dist` over the single variable `var`."""

    id: int
    name: str
    var: int
    size: int
    dist: Distribution

    @property
    def children(self) -> tuple[int, ...]:
        return ()

    kind = "input"


@dataclass(frozen=True, eq=False)
class ProductNode:
    """Row i multiplies, for each child c, row `index[c][i]` of c (identity when index[c] is None).

    Elementwise products of equal-size children are the common case (all indices None); index
    arrays express broadcasts and outer products (RAT-SPN) without extra node kinds.
    """

    id: int
    name: str
    children: tuple[int, ...]
    size: int
    index: tuple[np.ndarray | None, ...] | None = None

    kind = "product"

    def child_rows(self, c: int) -> np.ndarray:
        """Rows of child number c used by each of this node's rows."""
        if self.index is None or self.index[c] is None:
            return np.arange(self.size)
        return np.asarray(self.index[c])


@dataclass(frozen=True, eq=False)
class SumNode:
    """Row i mixes all rows of all children (concatenated) with weights [size, K].

    `mask` [size, K] (bool) marks the edges that exist: None means dense. `tie` names another
    sum node whose parameters this node shares (same shape and mask).
    """

    id: int
    name: str
    children: tuple[int, ...]
    size: int
    mask: np.ndarray | None = None
    tie: int | None = None

    kind = "sum"


Node = InputNode | ProductNode | SumNode


def same_structure(a: Node, b: Node) -> bool:
    """Structural equality of two nodes (ids and names included)."""
    if type(a) is not type(b) or a.id != b.id or a.name != b.name or a.size != b.size:
        return False
    if isinstance(a, InputNode):
        assert isinstance(b, InputNode)
        return a.var == b.var and a.dist == b.dist
    if a.children != b.children:
        return False
    if isinstance(a, ProductNode):
        assert isinstance(b, ProductNode)
        return all(np.array_equal(a.child_rows(c), b.child_rows(c)) for c in range(len(a.children)))
    assert isinstance(a, SumNode) and isinstance(b, SumNode)
    if a.tie != b.tie:
        return False
    if a.mask is None or b.mask is None:
        return a.mask is None and b.mask is None
    return np.array_equal(a.mask, b.mask)
