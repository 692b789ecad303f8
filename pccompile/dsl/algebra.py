"""Circuit algebra in the DSL: `square(c)`, `multiply(a, b)` and `integrate(c, over=[...])`.

Their arguments are whole circuits (node names of size 1, or other such expressions) and their
result is a whole circuit, not a node vector: it can be the output or an argument of another
operation, never the child of a sum or product. Each is a pass of passes/ run when the file is
read (the operations compute the result's parameters from their arguments'), so arguments
whose parameters the file leaves out get them drawn first, from the `seed` setting (0 unless
the file sets it)."""

from __future__ import annotations

from dataclasses import dataclass, field

import lark

from pccompile import builder
from pccompile.ir import Circuit, CircuitError, PCError
from pccompile.passes import InitParams, multiply, square
from pccompile.passes.marginalize import Integrate

ARITY = {"square": 1, "multiply": 2, "integrate": 1}
"""The operations and how many circuits each takes."""


@dataclass
class CircuitExpr:
    """An operation on whole circuits, evaluated when the file's output is built."""

    op: str
    args: list[str]  # node names
    over: list[int] = field(default_factory=list)  # integrate: variable indices
    token: object = None  # the call, for errors
    name: str | None = None
    size: int = 1


def read_call(parser, func_tok, size, pos_args, kw) -> CircuitExpr:
    """Check an algebra call's arguments where they stand."""
    op = str(func_tok)
    if size not in (None, 1):
        raise parser.error(func_tok, f"{op} makes a whole circuit, of size 1; drop the [{size}]")
    allowed = {"over"} if op == "integrate" else set()
    for key, (tok, _) in kw.items():
        if key not in allowed:
            raise parser.error(tok, f"{op} has no argument '{key}'" + ("; expected over" if allowed else ""))
    if len(pos_args) != ARITY[op]:
        raise parser.error(
            func_tok, f"{op} takes {ARITY[op]} circuit{'s' if ARITY[op] > 1 else ''}, got {len(pos_args)}"
        )
    names = []
    for a in pos_args:
        if not (isinstance(a, lark.Tree) and a.data == "name_ref"):
            raise parser.error(a, f"{op} takes node names (whole circuits)")
        name = str(a.children[0])
        if name not in parser.nodes:
            raise parser.error(a, f"unknown node '{name}'")
        node = parser.nodes[name]
        if not isinstance(node, CircuitExpr) and node.size != 1:
            raise parser.error(a, f"{op} takes whole circuits (size 1); '{name}' has size {node.size}")
        names.append(name)
    over: list[int] = []
    if op == "integrate":
        if "over" not in kw:
            raise parser.error(func_tok, "integrate needs over=[variables], the variables to integrate out")
        over = _variables(parser, kw["over"][1])
    return CircuitExpr(op, names, over, func_tok)


def _variables(parser, v) -> list[int]:
    """over=x (an array or one variable) or over=[x[0], a, ...] -> variable indices."""
    items = [c for c in v.children if c is not None] if isinstance(v, lark.Tree) and v.data == "list" else [v]
    out: list[int] = []
    for item in items:
        if isinstance(item, lark.Tree) and item.data == "name_ref" and str(item.children[0]) in parser.var_arrays:
            out.extend(parser.var_arrays[str(item.children[0])])
        else:
            out.append(parser.variable(item)[0])
    if len(set(out)) != len(out):
        raise parser.error(v, "integrate: a variable is named twice in over")
    return out


def evaluate(parser, expr: CircuitExpr, meta: dict, seed: int) -> Circuit:
    """The circuit an expression stands for; errors of the passes reported at its call."""
    args = [_argument(parser, name, meta, seed) for name in expr.args]
    try:
        if expr.op == "square":
            return square(args[0])
        if expr.op == "multiply":
            return multiply(args[0], args[1])
        names = tuple(args[0].variables[v].name for v in expr.over)
        out = Integrate(vars=names).run(args[0])
        return Circuit(out.variables, out.nodes, out.root, out.params, {**out.meta, **_kept(meta)}, out.regions)
    except PCError as e:
        raise parser.error(expr.token, f"{expr.op}: {e}") from None


def _kept(meta: dict) -> dict:
    """What of the file's settings holds for a circuit over fewer variables."""
    return {k: v for k, v in meta.items() if k not in ("image",)}


def _argument(parser, name: str, meta: dict, seed: int) -> Circuit:
    node = parser.nodes[name]
    if isinstance(node, CircuitExpr):
        return evaluate(parser, node, meta, seed)
    order = [v for v in parser.nodes.values() if not isinstance(v, CircuitExpr)]
    try:
        circuit = builder.build(node, parser.variables, {"name": name, **meta}, order=order)
    except CircuitError as e:
        raise parser.error(parser.where.get(e.node, parser.where[name]), str(e)) from None
    return InitParams(seed=seed).run(circuit)
