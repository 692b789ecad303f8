"""`integrate` and `condition`: partial evaluation of a circuit on some of its variables.

Both give each input node over an eliminated variable a constant value per row: 1 when the
variable is integrated out (a normalised input integrates to 1), p(e) when it is set to its
evidence e. The constants then move up the circuit, in log space: a product multiplies in the
constants of its eliminated children and drops them; a sum folds its children's constants
into its weights (w_k c_k), renormalises each row and passes the row sums up as its own
constant; a node over eliminated variables only is a constant itself. What is left is a
smaller circuit over the other variables, with normalised weights, and a constant at the
root: log 1 = 0 for `integrate` (so the circuit is the marginal p(rest)), log p(e) for
`condition` (the circuit is then p(rest | e), and p(rest, e) = p(e) p(rest | e)); it is kept in
`circuit.meta["log_scale"]`.

Smoothness (every child of a sum over the sum's variables) is what makes this exact: a sum's
children are then eliminated all or none. The IR's verifier guarantees it; the pass checks it
again and names the sum that breaks it. Tied sums are untied (after conditioning, the same
weights multiply different constants).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from pccompile.ir import ArgumentError, Circuit, InputNode, ProductNode, StructureError, SumNode, Variable
from pccompile.ir.circuit import Region
from pccompile.ir.options import option_value, split_option

from .base import Pass, PassContext, register


def _resolve(circuit: Circuit, names, what: str) -> list[int]:
    """Variable indices of `names` (names, or x0-style indices of unnamed variables)."""
    index = {v.name: k for k, v in enumerate(circuit.variables)}
    out = []
    for name in names:
        if name not in index:
            known = ", ".join(list(index)[:8]) + (", ..." if len(index) > 8 else "")
            raise ArgumentError(f"{what}: the circuit has no variable '{name}'; its variables: {known}")
        out.append(index[name])
    if len(set(out)) != len(out):
        raise ArgumentError(f"{what}: a variable is named twice")
    if len(out) == circuit.num_vars:
        raise ArgumentError(f"{what}: every variable would go, leaving a constant; keep at least one")
    return out


def _log_normalise(logw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows of exp(logw) normalised, log of their sums); a row of zeros stays zero (-inf sum)."""
    top = np.max(logw, axis=1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        total = np.log(np.exp(logw - top).sum(1, keepdims=True)) + top
        w = np.where(np.isfinite(total), np.exp(logw - total), 0.0)
    return w, total[:, 0]


@dataclass
class _Folded:
    """A node after elimination: kept (`node`, the new node) or a constant (node None), with
    its log-constant per row (the factor its value carries)."""

    node: Any
    log_c: np.ndarray


def eliminate(circuit: Circuit, gone: set[int], log_inputs: dict[int, np.ndarray], what: str) -> Circuit:
    """The circuit over the variables not in `gone`, each input node over a variable in `gone`
    replaced by its log-constants `log_inputs[node id]` (default 0: integrated out); the
    root's constant in meta["log_scale"]."""
    folded: dict[int, _Folded] = {}
    params: dict[int, dict[str, np.ndarray]] = {}
    keep_var = {old: new for new, old in enumerate(k for k in range(circuit.num_vars) if k not in gone)}
    reachable = set(circuit.reachable())
    for nid in (i for i in circuit.nodes if i in reachable):  # children before parents
        n = circuit.nodes[nid]
        if isinstance(n, InputNode):
            if n.var in gone:
                folded[nid] = _Folded(None, np.asarray(log_inputs.get(nid, np.zeros(n.size)), np.float64))
            else:
                folded[nid] = _Folded(InputNode(nid, n.name, keep_var[n.var], n.size, n.dist), np.zeros(n.size))
                params[nid] = dict(circuit.params[nid])
        elif isinstance(n, ProductNode):
            folded[nid] = _product(n, folded)
        else:
            folded[nid] = _sum(circuit, n, folded, params, what)
    root = folded[circuit.root]
    if root.node is None:  # pragma: no cover - _resolve keeps a variable, so the root stays
        raise ArgumentError(f"{what}: nothing is left of the circuit")
    nodes = {i: f.node for i, f in folded.items() if f.node is not None}
    variables = tuple(Variable(circuit.variables[k].name, circuit.variables[k].domain) for k in keep_var)
    meta = {k: v for k, v in circuit.meta.items() if k not in ("image", "log_scale")}  # fewer pixels now
    meta["log_scale"] = float(circuit.meta.get("log_scale", 0.0)) + float(root.log_c[0])
    regions = {
        i: Region(r.name, tuple(keep_var[v] for v in r.variables if v in keep_var))
        for i, r in circuit.regions.items()
        if i in nodes and any(v in keep_var for v in r.variables)
    }
    return Circuit(variables, nodes, circuit.root, params, meta, regions)


def _product(n: ProductNode, folded: dict[int, _Folded]) -> _Folded:
    log_c = np.zeros(n.size)
    kids, index = [], []
    for k, c in enumerate(n.children):
        rows = n.child_rows(k)
        log_c = log_c + folded[c].log_c[rows]
        if folded[c].node is not None:
            kids.append(c)
            index.append(None if n.index is None else n.index[k])
    if not kids:
        return _Folded(None, log_c)
    idx = None if all(ix is None for ix in index) else tuple(index)
    return _Folded(ProductNode(n.id, n.name, tuple(kids), n.size, idx), log_c)


def _sum(circuit: Circuit, n: SumNode, folded: dict[int, _Folded], params: dict, what: str) -> _Folded:
    gone = [folded[c].node is None for c in n.children]
    if any(gone) and not all(gone):
        first = circuit.nodes[n.children[gone.index(False)]].name
        raise StructureError(
            n.name, f"{what} needs a smooth circuit: child '{first}' keeps variables its siblings lose"
        )
    w = np.asarray(circuit.params[circuit.param_source(n).id]["weights"], np.float64)
    mask = circuit.edge_mask(n)
    with np.errstate(divide="ignore"):
        logw = np.where(mask, np.log(w / w.sum(1, keepdims=True)), -np.inf)
    logw = logw + np.concatenate([folded[c].log_c for c in n.children])[None, :]
    w_new, log_c = _log_normalise(logw)
    if all(gone):
        return _Folded(None, log_c)
    params[n.id] = {"weights": np.where(mask, w_new, 0.0).astype(np.float32)}
    # a row whose every edge lost all its mass (impossible evidence) keeps its weights
    dead = ~np.isfinite(log_c)
    if dead.any():
        params[n.id]["weights"][dead] = np.asarray(w, np.float32)[dead]
    return _Folded(SumNode(n.id, n.name, n.children, n.size, n.mask, None), log_c)


@register
@dataclass(frozen=True)
class Integrate(Pass):
    """Integrate (sum) the named variables out: the circuit of their marginal over the rest.
    `vars`: variable names, e.g. integrate{vars=x0,x1}."""

    name: ClassVar[str] = "integrate"
    vars: tuple[str, ...] | None = None

    def run(self, circuit: Circuit, ctx: PassContext | None = None) -> Circuit:
        if not self.vars:
            return circuit
        gone = set(_resolve(circuit, self.vars, "pass 'integrate'"))
        return eliminate(circuit, gone, {}, "pass 'integrate'")


@register
@dataclass(frozen=True)
class Condition(Pass):
    """Set the named variables to their evidence, e.g. condition{x3=1,x4=0}: the circuit of
    p(rest | evidence) over the other variables, log p(evidence) in meta["log_scale"].
    `evidence`: "name=value" items (the pipeline's unknown keys are taken as evidence)."""

    name: ClassVar[str] = "condition"
    free_options: ClassVar[str] = "evidence"
    needs: ClassVar[tuple[str, ...]] = ("evidence_log_probs",)
    evidence: tuple[str, ...] | None = None

    def values(self) -> dict[str, float]:
        """The evidence as {variable name: value}."""
        out = {}
        for item in self.evidence or ():
            name, value = split_option(item)
            if value is None or name in out:
                raise ArgumentError(f"pass 'condition': evidence '{item}' is not a new name=number")
            out[name] = option_value(value, float, f"pass 'condition': evidence for '{name}'")
        return out

    def run(self, circuit: Circuit, ctx: PassContext | None = None) -> Circuit:
        values = self.values()
        if not values:
            return circuit
        gone = set(_resolve(circuit, list(values), "pass 'condition'"))
        ctx = ctx or PassContext()
        log_inputs = ctx.require("evidence_log_probs", self.name)
        return eliminate(circuit, gone, log_inputs, "pass 'condition'")
