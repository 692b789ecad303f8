"""Verification: every rule a valid circuit obeys, each failure naming the node and the rule."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from .circuit import Circuit
from .errors import (
    CycleError,
    DecomposabilityError,
    DomainError,
    ParameterError,
    SizeMismatchError,
    SmoothnessError,
    StructureError,
)
from .limits import check_circuit
from .nodes import InputNode, ProductNode, SumNode


def verify(circuit: Circuit, *, require_params: bool = False, atol: float = 1e-4) -> None:
    """Raise a CircuitError subclass on the first broken rule; return None when valid.

    Scopes are bitsets (Python ints) kept only while a parent still has to read them, so a chain
    over many variables (an HMM) costs time and memory linear in its length, not quadratic."""
    check_circuit(circuit)  # sizes first: nothing below runs over a circuit memory cannot hold
    _check_meta(circuit)  # before the parameters: `signed` decides what their rules are
    _check_order_and_cycles(circuit)
    nodes = circuit.nodes
    names = [n.name for n in nodes.values()]
    if len(set(names)) != len(names):
        seen: set[str] = set()
        dup = next(n for n in names if n in seen or _add(seen, n))
        raise StructureError(dup, "two node vectors share this name")
    root = nodes[circuit.root]
    if root.size != 1:
        raise SizeMismatchError(root.name, f"the root must have size 1, it has size {root.size}")
    readers = Counter(c for n in nodes.values() for c in n.children)
    scopes: dict[int, int] = {}
    for node in nodes.values():
        if node.size < 1:
            raise SizeMismatchError(node.name, f"size must be at least 1, got {node.size}")
        if isinstance(node, InputNode):
            _check_input(circuit, node)
            scope = 1 << node.var
        elif isinstance(node, ProductNode):
            scope = _check_product(circuit, node, scopes)
        else:
            scope = _check_sum(circuit, node, scopes)
        _check_params(circuit, node, require_params, atol)
        if node.id in circuit.regions:
            _check_region(circuit, node, scope)
        scopes[node.id] = scope
        for c in node.children:
            readers[c] -= 1
            if readers[c] == 0 and c != circuit.root:
                scopes.pop(c, None)
    missing = ((1 << circuit.num_vars) - 1) & ~scopes[circuit.root]
    if missing:
        v = circuit.variables[_lowest(missing)].name
        raise StructureError(root.name, f"variable '{v}' is declared but not in the root's scope")
    stray = [nid for nid in circuit.regions if nid not in nodes]
    if stray:
        raise StructureError(
            None, f"region '{circuit.regions[stray[0]].name}' names node id {stray[0]}, which does not exist"
        )


def _check_region(circuit: Circuit, node, scope: int) -> None:
    """A region names the latent of its node vector: its variables are distinct indices of the
    node's scope (LVD reads them as columns of the data)."""
    region = circuit.regions[node.id]
    variables = region.variables
    if not isinstance(region.name, str) or not variables or len(set(variables)) != len(variables):
        raise StructureError(node.name, f"region {region.name!r} needs a name and distinct variables, has {variables}")
    for v in variables:
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < circuit.num_vars or not scope >> v & 1:
            raise StructureError(
                node.name, f"region '{region.name}' holds variable {v!r}, which is not in the node's scope"
            )


def _add(seen: set[str], name: str) -> bool:
    """Add `name` to `seen`; False, so that a generator's condition can record as it scans."""
    seen.add(name)
    return False


def _check_meta(circuit: Circuit) -> None:
    """The metadata pccompile reads: `image`, the shape sample grids and LVD's patches use, must
    cover the variables exactly; `name` is text."""
    meta = circuit.meta
    if "image" in meta:
        shape: Any = meta["image"]
        ok = isinstance(shape, (list, tuple)) and len(shape) in (2, 3)
        ok = ok and all(isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= circuit.num_vars for s in shape)
        if not ok:
            raise StructureError(
                None,
                f"meta field 'image' is {shape!r}; expected [height, width] or [channels, height, width] of positive integers",
            )
        if int(np.prod(shape, dtype=object)) != circuit.num_vars:
            raise StructureError(
                None,
                f"meta field 'image' {list(shape)} has {int(np.prod(shape, dtype=object)):,} pixels, but the circuit has {circuit.num_vars} variables",
            )
    if "signed" in meta and not isinstance(meta["signed"], bool):
        raise StructureError(None, f"meta field 'signed' is {meta['signed']!r}; expected true or false")
    if "name" in meta and not isinstance(meta["name"], str):
        raise StructureError(None, f"meta field 'name' is {meta['name']!r}; expected text")


def _lowest(bits: int) -> int:
    """Index of the lowest set bit: the first variable of a scope bitset."""
    return (bits & -bits).bit_length() - 1


def _check_order_and_cycles(circuit: Circuit) -> None:
    nodes = circuit.nodes
    if circuit.root not in nodes:
        raise StructureError(None, f"root id {circuit.root} is not a node")
    # Colour DFS finds a cycle and names a node on it, whatever the stored order.
    state: dict[int, int] = {}
    for start in nodes:
        if state.get(start):
            continue
        stack = [(start, iter(nodes[start].children))]
        state[start] = 1
        while stack:
            nid, it = stack[-1]
            child = next(it, None)
            if child is None:
                state[nid] = 2
                stack.pop()
                continue
            if child not in nodes:
                raise StructureError(nodes[nid].name, f"child id {child} does not exist")
            if state.get(child) == 1:
                raise CycleError(nodes[child].name, f"it is reachable from itself (via '{nodes[nid].name}')")
            if not state.get(child):
                state[child] = 1
                stack.append((child, iter(nodes[child].children)))
    position = {nid: k for k, nid in enumerate(nodes)}
    for nid, node in nodes.items():
        for c in node.children:
            if position[c] > position[nid]:
                raise StructureError(node.name, f"child '{nodes[c].name}' comes after it in node order")


def _check_input(circuit: Circuit, node: InputNode) -> None:
    if not 0 <= node.var < circuit.num_vars:
        raise DomainError(node.name, f"variable index {node.var} is out of range 0..{circuit.num_vars - 1}")
    var = circuit.variables[node.var]
    if not node.dist.fits(var.domain):
        raise DomainError(
            node.name,
            f"a {node.dist.name} input with {node.dist.num_cats} categories "
            f"does not fit variable '{var.name}' of domain {var.domain.describe()}",
        )


def _check_product(circuit: Circuit, node: ProductNode, scopes: dict[int, int]) -> int:
    if not node.children:
        raise StructureError(node.name, "a product needs at least one child")
    if node.index is not None and len(node.index) != len(node.children):
        raise SizeMismatchError(node.name, "one index array per child is required")
    seen = 0
    for k, c in enumerate(node.children):
        child = circuit.nodes[c]
        rows = node.child_rows(k)
        if rows.shape != (node.size,):
            raise SizeMismatchError(
                node.name, f"index for child '{child.name}' has {rows.size} rows, expected {node.size}"
            )
        if node.index is None or node.index[k] is None:
            if child.size != node.size:
                raise SizeMismatchError(
                    node.name, f"elementwise product of size {node.size} has child '{child.name}' of size {child.size}"
                )
        elif rows.size and (rows.min() < 0 or rows.max() >= child.size):
            raise SizeMismatchError(node.name, f"index for child '{child.name}' leaves 0..{child.size - 1}")
        overlap = seen & scopes[c]
        if overlap:
            v = circuit.variables[_lowest(overlap)].name
            raise DecomposabilityError(node.name, f"children share variable '{v}' (child '{child.name}')")
        seen |= scopes[c]
    return seen


def _check_sum(circuit: Circuit, node: SumNode, scopes: dict[int, int]) -> int:
    if not node.children:
        raise StructureError(node.name, "a sum needs at least one child")
    first = scopes[node.children[0]]
    for c in node.children[1:]:
        if scopes[c] != first:
            v = circuit.variables[_lowest(first ^ scopes[c])].name
            raise SmoothnessError(
                node.name,
                f"children '{circuit.nodes[node.children[0]].name}' and "
                f"'{circuit.nodes[c].name}' differ in scope (variable '{v}')",
            )
    k = circuit.child_size(node)
    if node.mask is not None:
        mask = np.asarray(node.mask)
        if mask.shape != (node.size, k):
            raise SizeMismatchError(node.name, f"mask has shape {mask.shape}, expected {(node.size, k)}")
        empty = np.flatnonzero(~mask.astype(bool).any(1))
        if empty.size:
            raise StructureError(node.name, f"row {int(empty[0])} has no edge left in its mask")
    if node.tie is not None:
        if node.tie not in circuit.nodes or not isinstance(circuit.nodes[node.tie], SumNode):
            raise StructureError(node.name, "it is tied to something that is not a sum node")
        src = circuit.param_source(node)
        if src.size != node.size or circuit.child_size(src) != k:
            raise SizeMismatchError(
                node.name, f"tied to '{src.name}' of shape {(src.size, circuit.child_size(src))}, has {(node.size, k)}"
            )
        if not np.array_equal(circuit.edge_mask(src), circuit.edge_mask(node)):
            raise StructureError(node.name, f"tied to '{src.name}' but their edge masks differ")
    return first


def _check_params(circuit: Circuit, node, require: bool, atol: float) -> None:
    params = circuit.params.get(node.id)
    if isinstance(node, ProductNode):
        if params:
            raise ParameterError(node.name, "product nodes have no parameters")
        return
    if isinstance(node, SumNode) and node.tie is not None:
        if params:
            raise ParameterError(node.name, "a tied sum stores no parameters of its own")
        return
    if params is None:
        if require:
            raise ParameterError(node.name, "parameters are missing")
        return
    if isinstance(node, InputNode):
        node.dist.check_params(node.name, params, node.size)
        return
    w = params.get("weights")
    k = circuit.child_size(node)
    if w is None:
        raise ParameterError(node.name, "missing parameter 'weights'")
    w = np.asarray(w)
    if w.shape != (node.size, k):
        raise ParameterError(node.name, f"weights have shape {w.shape}, expected {(node.size, k)}")
    if not np.all(np.isfinite(w)):
        raise ParameterError(node.name, "weights contain NaN or infinite values")
    signed = circuit.meta.get("signed") is True
    if np.any(w < 0) and not signed:
        r, c = np.argwhere(w < 0)[0]
        raise ParameterError(
            node.name,
            f"weight [{r}, {c}] is negative ({float(w[r, c]):.6g}); only a circuit declared signed "
            "(meta signed: true, evaluated by pccompile.signed) may subtract",
        )
    mask = circuit.edge_mask(node)
    if np.any(w[~mask] != 0):
        raise ParameterError(node.name, "weights are non-zero on edges outside the mask")
    if signed:
        return  # signed weights have no normalisation: the circuit is normalised by its square's integral
    sums = w.sum(1)
    bad = np.flatnonzero(np.abs(sums - 1) > atol)
    if bad.size:
        raise ParameterError(node.name, f"weights of row {int(bad[0])} sum to {float(sums[bad[0]]):.6g}, not 1")
