"""Python builder API: `inputs`, `multiply`, `summate` on node vectors, then `build`.

In the spirit of PyJuice's inputs/multiply/summate: each call returns a `Vec` that stands for a
vector of `size` PC nodes; `build(root)` turns the reachable graph into an IR Circuit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import count

import numpy as np

from pccompile.ir import (
    FAMILIES,
    ArgumentError,
    Bernoulli,
    Categorical,
    Circuit,
    Gaussian,
    InputNode,
    ProductNode,
    Region,
    SumNode,
    Variable,
    infer_variables,
    verify,
)
from pccompile.ir.distributions import Distribution

_ids = count()


@dataclass(eq=False)
class Vec:
    """A node vector under construction (identity matters, not value)."""

    kind: str
    size: int
    children: tuple["Vec", ...] = ()
    var: int | None = None
    dist: Distribution | None = None
    params: dict[str, np.ndarray] | None = None
    mask: np.ndarray | None = None
    tie: "Vec | None" = None
    index: tuple[np.ndarray | None, ...] | None = None
    name: str | None = None
    region: Region | None = None  # the latent this vector stands for (structure templates set it)
    serial: int = field(default_factory=lambda: next(_ids))

    def __repr__(self) -> str:
        return f"Vec({self.kind}, size={self.size}, name={self.name!r})"


def inputs(var: int, size: int, dist: Distribution, *, name: str | None = None, **params) -> Vec:
    """`size` input distributions over variable `var`; params like probs=[[...]], p=[...],
    mean=[...], std=[...] (random when omitted)."""
    if not isinstance(dist, Distribution):
        raise ArgumentError(
            f"dist must be an input family ({', '.join(c.__name__ for c in FAMILIES)}; e.g. Categorical(k), "
            f"Binomial(n), Gaussian()), got {dist!r}"
        )
    if size < 1:
        raise ArgumentError(f"size must be >= 1, got {size}")
    unknown = set(params) - set(dist.param_names)
    if unknown:
        raise ArgumentError(
            f"{dist.name} inputs take parameters {', '.join(dist.param_names)}; got {', '.join(sorted(unknown))}"
        )
    arrays = None
    if params:
        shapes = dist.param_shapes(size)
        missing = set(shapes) - set(params)
        if missing:
            raise ArgumentError(
                f"{dist.name} inputs need all of {', '.join(shapes)} when any is given; "
                f"missing {', '.join(sorted(missing))}"
            )
        arrays = {
            k: np.asarray(v, dtype=np.float32).reshape(shapes[k])
            if np.size(v) == np.prod(shapes[k])
            else np.asarray(v, dtype=np.float32)
            for k, v in params.items()
        }
    return Vec("input", int(size), var=int(var), dist=dist, params=arrays, name=name)


def input_vector(var: int, size: int, num_cats: int | None, *, bernoulli: bool = True) -> Vec:
    """The usual input vector over a variable with `num_cats` categories: Gaussian for a real
    variable (None), Bernoulli for a binary one (unless `bernoulli=False`), else Categorical."""
    if num_cats is None:
        return inputs(var, size, Gaussian())
    if num_cats == 2 and bernoulli:
        return inputs(var, size, Bernoulli())
    return inputs(var, size, Categorical(int(num_cats)))


def multiply(*children: Vec, index=None, size: int | None = None, name: str | None = None) -> Vec:
    """Elementwise product of equal-size children, or row-selected with `index` (one array of rows
    per child, or None for a child used elementwise)."""
    if not children:
        raise ArgumentError("multiply needs at least one child")
    if index is not None:
        index = tuple(None if ix is None else np.asarray(ix, dtype=np.int64) for ix in index)
        size = size or next(len(ix) for ix in index if ix is not None)
    size = size or children[0].size
    return Vec("product", int(size), tuple(children), index=index, name=name)


def summate(
    *children: Vec, size: int = 1, weights=None, mask=None, tie: Vec | None = None, name: str | None = None
) -> Vec:
    """`size` sum nodes over all rows of all children; optional weights [size, K], edge mask
    [size, K] (sparsity) or `tie` to another sum's parameters."""
    if not children:
        raise ArgumentError("summate needs at least one child")
    params = None if weights is None else {"weights": np.asarray(weights, dtype=np.float32)}
    mask = None if mask is None else np.asarray(mask, dtype=bool)
    if mask is not None and mask.all():
        mask = None
    return Vec("sum", int(size), tuple(children), params=params, mask=mask, tie=tie, name=name)


def reachable(root: Vec) -> list[Vec]:
    """Every vec under `root` (children and tie sources), children first."""
    return _collect(root)


def _collect(root: Vec, seen: set[int] | None = None) -> list[Vec]:
    """All vecs reachable from root (children and tie sources) and not in `seen`, children first."""
    order: list[Vec] = []
    seen = set() if seen is None else seen
    stack: list[tuple[Vec, bool]] = [(root, False)]
    while stack:
        v, done = stack.pop()
        if done:
            order.append(v)
            continue
        if id(v) in seen:
            continue
        seen.add(id(v))
        stack.append((v, True))
        deps = list(v.children) + ([v.tie] if v.tie is not None else [])
        for c in reversed(deps):
            if id(c) not in seen:
                stack.append((c, False))
    return order


def build(
    root: Vec, variables: list[Variable] | int | None = None, meta: dict | None = None, order: list[Vec] | None = None
) -> Circuit:
    """Turn the graph under `root` into an IR Circuit (ids in children-first order).

    `variables`: a list of Variable, or a count (names x0..), or None to infer from the inputs.
    `order`: a topological order to keep (e.g. definition order); unreachable entries are dropped.
    The circuit is verified as built (every structural rule; parameters where given), so an invalid
    graph is reported here, naming the node, and never reaches a pass."""
    reach = _collect(root)
    if order is not None:
        keep = {id(v) for v in reach}
        seen: set[int] = set()
        order = [u for v in list(order) + [root] if id(v) in keep for u in _collect(v, seen)]
    else:
        order = reach
    ids = {id(v): k for k, v in enumerate(order)}
    if variables is None or isinstance(variables, int):
        variables = infer_variables(
            ((v.name or f"input{ids[id(v)]}", v.var, v.dist) for v in order if v.kind == "input"), variables
        )
    nodes, params = {}, {}
    used_names: set[str] = set()
    for v in order:
        k = ids[id(v)]
        name = v.name or f"{v.kind}{k}"
        if name in used_names:
            name = f"{name}_{k}"
        used_names.add(name)
        if v.kind == "input":
            nodes[k] = InputNode(k, name, v.var, v.size, v.dist)
        elif v.kind == "product":
            nodes[k] = ProductNode(k, name, tuple(ids[id(c)] for c in v.children), v.size, v.index)
        else:
            tie = None if v.tie is None else ids[id(v.tie)]
            nodes[k] = SumNode(k, name, tuple(ids[id(c)] for c in v.children), v.size, v.mask, tie)
        if v.params is not None:
            params[k] = dict(v.params)
    regions = {ids[id(v)]: v.region for v in order if v.region is not None}
    circuit = Circuit(tuple(variables), nodes, ids[id(root)], params, dict(meta or {}), regions)
    verify(circuit)
    return circuit
