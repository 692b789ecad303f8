"""DSL front end: text -> IR Circuit, with errors that name file, line and column.

Parsing is two steps: lark (LALR) builds a tree; `_Compiler` walks the statements in order and
builds node vectors through the builder API, checking each statement where it stands so that a
semantic error points at the offending token.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import lark
import numpy as np

from pccompile import builder
from pccompile.ir import (
    DISTRIBUTIONS,
    ArgumentError,
    Circuit,
    CircuitError,
    DSLSemanticError,
    DSLSyntaxError,
    PCError,
    ResourceError,
    SourceError,
    Variable,
)
from pccompile.ir.distributions import BINARY, COUNT, REAL, Domain
from pccompile.ir.limits import (
    MAX_CATEGORIES,
    MAX_NESTING,
    MAX_NODE_VECTORS,
    MAX_VARIABLES,
    MAX_VECTOR_SIZE,
    check_memory,
)

from . import algebra
from .settings import apply_setting
from .templates import TEMPLATES, TemplateContext

_PARSER: lark.Lark | None = None

_TOKEN_NAMES = {
    "NAME": "a name",
    "INT": "an integer",
    "SIGNED_NUMBER": "a number",
    "STRING": "a string",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "COMMA": "','",
    "EQUAL": "'='",
    "COLON": "':'",
    "VAR": "'var'",
    "OUTPUT": "'output'",
    "$END": "end of input",
}


def _parser() -> lark.Lark:
    global _PARSER
    if _PARSER is None:
        import pccompile.structures  # noqa: F401  (registers the structure templates: hclt, pd, ...)

        grammar = resources.files("pccompile.dsl").joinpath("grammar.lark").read_text()
        _PARSER = lark.Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=True)
    return _PARSER


@dataclass
class _Pos:
    line: int
    column: int


def _pos(item) -> _Pos:
    if isinstance(item, lark.Token):
        return _Pos(item.line, item.column)
    meta = item.meta
    if not getattr(meta, "empty", True):
        return _Pos(meta.line, meta.column)
    # a tree without positions (an empty list): the first token inside it, else line 1
    tok = next(item.scan_values(lambda t: isinstance(t, lark.Token)), None)
    return _Pos(tok.line, tok.column) if tok is not None else _Pos(1, 1)


def parse(text: str, file: str = "<string>", base_dir: Path | None = None) -> Circuit:
    """Parse DSL text into a verified-structure Circuit (parameters may be missing)."""
    lines = text.split("\n")  # lines as the parser counts them: a lone \r or \f does not end one
    try:
        tree = _parser().parse(text)
    except lark.UnexpectedCharacters as e:
        raise DSLSyntaxError(
            f"unexpected character {text[e.pos_in_stream]!r}" + _expected(e.allowed),
            file=file,
            line=e.line,
            column=e.column,
            source_line=_line(lines, e.line),
        ) from None
    except lark.UnexpectedToken as e:
        tok = "end of input" if e.token.type == "$END" else repr(str(e.token))
        if e.token.type == "$END":
            line, col = _end_position(lines)
        else:
            line, col = e.line, e.column
        raise DSLSyntaxError(
            f"unexpected {tok}" + _expected(e.expected),
            file=file,
            line=line,
            column=col,
            source_line=_line(lines, line),
        ) from None
    except lark.UnexpectedEOF as e:
        line, col = _end_position(lines)
        raise DSLSyntaxError(
            "unexpected end of input" + _expected(e.expected),
            file=file,
            line=line,
            column=col,
            source_line=_line(lines, line),
        ) from None
    return _Compiler(file, lines, base_dir or Path.cwd()).run(tree)


def parse_file(path: str | Path) -> Circuit:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ArgumentError(f"cannot read circuit file '{path}': {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        shown = raw.split(b"\n")[line - 1].decode("utf-8", "replace")
        raise DSLSyntaxError(
            f"byte 0x{raw[e.start]:02x} is not UTF-8 text; save the file as UTF-8",
            file=str(path),
            line=line,
            column=column,
            source_line=shown,
        ) from None
    return parse(text, file=str(path), base_dir=path.parent)


def _end_position(lines: list[str]) -> tuple[int, int]:
    """Just past the last character of the last line holding code."""
    for n in range(len(lines), 0, -1):
        code = lines[n - 1].split("#", 1)[0].rstrip()
        if code:
            return n, len(code) + 1
    return 1, 1


def _line(lines: list[str], n: int) -> str:
    return lines[n - 1] if 0 < n <= len(lines) else ""


def _expected(names) -> str:
    pretty = sorted({_TOKEN_NAMES.get(n, n.lower()) for n in names or ()})
    if not pretty:
        return ""
    return "; expected " + (pretty[0] if len(pretty) == 1 else ", ".join(pretty[:-1]) + " or " + pretty[-1])


class _Compiler:
    """Walks the statements; owns the name tables; raises DSLSemanticError at the token's place."""

    def __init__(self, file: str, lines: list[str], base_dir: Path):
        self.file, self.lines, self.base_dir = file, lines, base_dir
        self.variables: list[Variable] = []
        self.var_index: dict[str, int] = {}
        self.var_arrays: dict[str, list[int]] = {}
        self.nodes: dict[str, builder.Vec] = {}
        self.where: dict[str, _Pos] = {}
        self.meta: dict[str, object] = {}
        self.seed = 0  # draws the parameters an algebra operation's arguments leave out
        self.output: tuple[str, _Pos] | None = None
        self.parameters = 0

    def integer(self, tok, what: str, lo: int, hi: int) -> int:
        """An INT token as a Python int in lo..hi, or an error at the token naming the limit."""
        n = int(tok)
        if n < lo:
            raise self.error(tok, f"{what} must be at least {lo}, got {n}")
        if n > hi:
            raise self.error(tok, f"{what} {n:,} is beyond the limit of {hi:,}")
        return n

    def count_parameters(self, at, n: int) -> None:
        """Keep a running count of parameters and refuse, at the statement, what memory cannot hold."""
        self.parameters += n
        try:
            check_memory(self.parameters)
        except ResourceError as e:
            raise self.error(at, str(e)) from None

    def error(self, at, message: str):
        p = at if isinstance(at, _Pos) else _pos(at)
        return DSLSemanticError(
            message, file=self.file, line=p.line, column=p.column, source_line=_line(self.lines, p.line)
        )

    def run(self, tree: lark.Tree) -> Circuit:
        last = None
        for stmt in tree.children:
            if stmt.data == "var_stmt":
                self.var_stmt(stmt)
            elif stmt.data == "node_stmt":
                last = self.node_stmt(stmt)
            elif stmt.data == "setting_stmt":
                apply_setting(self, stmt)
            else:
                name = stmt.children[0]
                if str(name) not in self.nodes:
                    raise self.error(name, f"output names unknown node '{name}'")
                self.output = (str(name), _pos(name))
        if not self.nodes:
            raise DSLSemanticError(
                "the circuit defines no nodes; expected at least one node statement",
                file=self.file,
                line=max(len(self.lines), 1),
                column=1,
            )
        root_name = self.output[0] if self.output else ("root" if "root" in self.nodes else last)
        root = self.nodes[root_name]
        if isinstance(root, algebra.CircuitExpr):
            return algebra.evaluate(self, root, self.meta, self.seed)
        try:  # build verifies the circuit as written
            order = [v for v in self.nodes.values() if not isinstance(v, algebra.CircuitExpr)]
            circuit = builder.build(root, self.variables, self.meta, order=order)
        except CircuitError as e:
            # a node the user named, else (a node a template made) the statement of the root
            at = self.where.get(e.node, self.where.get(root_name, _Pos(1, 1)))
            raise self.error(at, str(e)) from None
        except ResourceError as e:
            raise self.error(self.where.get(root_name, _Pos(1, 1)), str(e)) from None
        return circuit

    # -- statements -----------------------------------------------------------------------
    def var_stmt(self, stmt):
        *items, dom = stmt.children
        domain = self.domain(dom)
        for item in items:
            name_tok, count_tok = item.children
            name = str(name_tok)
            if name in self.var_index or name in self.var_arrays:
                raise self.error(name_tok, f"variable '{name}' is declared twice")
            if count_tok is None:
                if len(self.variables) >= MAX_VARIABLES:
                    raise self.error(name_tok, f"more than {MAX_VARIABLES:,} variables are beyond the limit")
                self.var_index[name] = len(self.variables)
                self.variables.append(Variable(name, domain))
            else:
                room = MAX_VARIABLES - len(self.variables)
                n = self.integer(count_tok, f"the length of variable array '{name}'", 1, max(room, 1))
                if n > room:
                    raise self.error(
                        count_tok, f"{len(self.variables) + n:,} variables are beyond the limit of {MAX_VARIABLES:,}"
                    )
                self.var_arrays[name] = list(range(len(self.variables), len(self.variables) + n))
                for i in range(n):
                    self.var_index[f"{name}[{i}]"] = len(self.variables)
                    self.variables.append(Variable(f"{name}[{i}]", domain))

    def domain(self, dom) -> Domain:
        name_tok, k_tok = dom.children
        name = str(name_tok)
        # domain keywords: (takes a category count, the domain)
        known = {"binary": (False, BINARY), "real": (False, REAL), "count": (False, COUNT), "categorical": (True, None)}
        takes_k, fixed = known.get(name, (None, None))
        if takes_k is False and k_tok is None:
            return fixed
        if takes_k and k_tok is not None:
            return Domain(self.integer(k_tok, "categorical: the number of categories", 2, MAX_CATEGORIES))
        raise self.error(
            name_tok,
            f"unknown domain '{name}{'(' + str(k_tok) + ')' if k_tok else ''}'; "
            "expected binary, real, count or categorical(K)",
        )

    def node_stmt(self, stmt) -> str:
        name_tok, size_tok, func_tok, *args = stmt.children
        name = str(name_tok)
        if name in self.nodes:
            raise self.error(name_tok, f"node '{name}' is already defined (line {self.where[name].line})")
        if name in self.var_index or name in self.var_arrays:
            raise self.error(name_tok, f"'{name}' is a variable; node names must differ from variable names")
        size = None if size_tok is None else self.integer(size_tok, "a node vector's size", 1, MAX_VECTOR_SIZE)
        if len(self.nodes) >= MAX_NODE_VECTORS:
            raise self.error(name_tok, f"more than {MAX_NODE_VECTORS:,} node vectors are beyond the limit")
        pos_args, kw = [], {}
        for a in args:
            if a is None:
                continue
            if isinstance(a, lark.Tree) and a.data == "kwarg":
                k_tok, v = a.children
                if str(k_tok) in kw:
                    raise self.error(k_tok, f"argument '{k_tok}' is given twice")
                kw[str(k_tok)] = (k_tok, v)
            else:
                if kw:
                    raise self.error(a, "positional arguments must come before keyword arguments")
                pos_args.append(a)
        func = str(func_tok)
        if func in DISTRIBUTIONS:
            vec = self.input_node(func_tok, size, pos_args, kw)
        elif func == "product":
            vec = self.product_node(func_tok, size, pos_args, kw)
        elif func == "sum":
            vec = self.sum_node(func_tok, size, pos_args, kw)
        elif func in TEMPLATES:
            vec = self.template_node(func_tok, size, pos_args, kw)
        elif func in algebra.ARITY:
            vec = algebra.read_call(self, func_tok, size, pos_args, kw)
        else:
            raise self.error(
                func_tok,
                f"unknown function '{func}'; expected {', '.join(sorted(DISTRIBUTIONS))}, "
                f"product, sum, {', '.join(algebra.ARITY)}"
                + (", or a template: " + ", ".join(sorted(TEMPLATES)) if TEMPLATES else ""),
            )
        vec.name = name
        self.nodes[name] = vec
        self.where[name] = _pos(name_tok)
        return name

    # -- node kinds ---------------------------------------------------------------------------
    def input_node(self, func_tok, size, pos_args, kw):
        func = str(func_tok)
        if len(pos_args) != 1:
            raise self.error(func_tok, f"{func}(...) takes exactly one variable, then keyword parameters")
        var, var_tok = self.variable(pos_args[0])
        domain = self.variables[var].domain
        dist = DISTRIBUTIONS[func].for_domain(domain)
        if not dist.fits(domain):
            raise self.error(
                var_tok,
                f"a {func} input does not fit variable '{self.variables[var].name}' of domain {domain.describe()}",
            )
        size = size or 1
        self.count_parameters(func_tok, size * (domain.num_cats or 2))
        unknown = set(kw) - set(dist.param_names)
        if unknown:
            k = sorted(unknown)[0]
            raise self.error(kw[k][0], f"{func} has no parameter '{k}'; expected {', '.join(dist.param_names)}")
        params = None
        if kw:
            shapes = dist.param_shapes(size)
            missing = [k for k in shapes if k not in kw]
            if missing:
                raise self.error(
                    func_tok, f"{func} with explicit parameters needs {', '.join(shapes)}; missing {', '.join(missing)}"
                )
            params = {}
            for k, shape in shapes.items():
                tok, v = kw[k]
                arr = self.array(v)
                if arr.shape != shape:
                    raise self.error(v, f"'{k}' has shape {arr.shape}, expected {shape} for size {size}")
                params[k] = arr.astype(np.float32)
            try:
                dist.check_params(func, params, size)
            except CircuitError as e:
                raise self.error(func_tok, str(e).split(": ", 1)[-1]) from None
        vec = builder.inputs(var, size, dist)
        vec.params = params
        return vec

    def child(self, arg):
        """A node reference: NAME (all rows) or NAME[[rows]] -> (vec, rows or None)."""
        if isinstance(arg, lark.Tree) and arg.data == "name_ref":
            tok = arg.children[0]
            return self.lookup(tok), None
        if isinstance(arg, lark.Tree) and arg.data == "rows_ref":
            tok, lst = arg.children
            vec = self.lookup(tok)
            rows = self.array(lst)
            if rows.ndim != 1 or not np.all(rows == np.round(rows)):
                raise self.error(lst, "a row selection is a flat list of integers")
            rows = rows.astype(np.int64)
            if rows.size and (rows.min() < 0 or rows.max() >= vec.size):
                raise self.error(lst, f"row selection leaves 0..{vec.size - 1} of '{tok}'")
            return vec, rows
        raise self.error(arg, "expected a node name or a row selection like name[[0, 1]]")

    def lookup(self, tok) -> builder.Vec:
        name = str(tok)
        if name not in self.nodes:
            hint = (
                " (it is a variable; wrap it in an input such as bernoulli(...))"
                if name in self.var_index or name in self.var_arrays
                else ""
            )
            raise self.error(tok, f"unknown node '{name}'{hint}")
        node = self.nodes[name]
        if isinstance(node, algebra.CircuitExpr):
            raise self.error(
                tok,
                f"'{name}' is a whole circuit ({node.op}(...)); use it as the output or in "
                f"{', '.join(algebra.ARITY)}, not as a child",
            )
        return node

    def product_node(self, func_tok, size, pos_args, kw):
        if kw:
            raise self.error(next(iter(kw.values()))[0], "product takes no keyword arguments")
        if not pos_args:
            raise self.error(func_tok, "product needs at least one child")
        kids, index = [], []
        for a in pos_args:
            vec, rows = self.child(a)
            kids.append(vec)
            index.append(rows)
        sizes = {len(r) if r is not None else v.size for v, r in zip(kids, index)}
        if len(sizes) != 1:
            raise self.error(
                func_tok,
                f"product children have different sizes {sorted(sizes)}; "
                "elementwise products need equal sizes (select rows with name[[...]])",
            )
        n = sizes.pop()
        if size is not None and size != n:
            raise self.error(func_tok, f"declared size {size} but the children have size {n}")
        return builder.multiply(*kids, index=None if all(r is None for r in index) else tuple(index), size=n)

    def sum_node(self, func_tok, size, pos_args, kw):
        unknown = set(kw) - {"weights", "mask", "tie"}
        if unknown:
            k = sorted(unknown)[0]
            raise self.error(kw[k][0], f"sum has no argument '{k}'; expected weights, mask or tie")
        if not pos_args:
            raise self.error(func_tok, "sum needs at least one child")
        kids = []
        for a in pos_args:
            vec, rows = self.child(a)
            if rows is not None:
                raise self.error(a, "sum children are whole node vectors (use a mask to drop edges)")
            kids.append(vec)
        size = size or 1
        width = sum(k.size for k in kids)
        self.count_parameters(func_tok, size * width)
        mask = weights = tie = None
        if "mask" in kw:
            mask = self.array(kw["mask"][1])
            if mask.shape != (size, width) or not np.all((mask == 0) | (mask == 1)):
                raise self.error(kw["mask"][1], f"mask must be a {size}x{width} matrix of 0/1")
            mask = mask.astype(bool)
            empty = np.flatnonzero(~mask.any(1))
            if empty.size:
                raise self.error(kw["mask"][1], f"mask row {int(empty[0])} has no edge")
        if "weights" in kw:
            weights = self.array(kw["weights"][1])
            if weights.shape != (size, width):
                raise self.error(kw["weights"][1], f"weights have shape {weights.shape}, expected {(size, width)}")
            signed = self.meta.get("signed") is True
            if not np.all(np.isfinite(weights)):
                raise self.error(kw["weights"][1], "weights must be finite")
            if np.any(weights < 0) and not signed:
                raise self.error(
                    kw["weights"][1],
                    "weights must be non-negative (a subtractive circuit says `signed = true` before its first node)",
                )
            if mask is not None and np.any(weights[~mask] != 0):
                raise self.error(kw["weights"][1], "weights must be 0 where the mask has no edge")
            sums = weights.sum(1)
            bad = np.flatnonzero(np.abs(sums - 1) > 1e-4)
            if bad.size and not signed:  # signed weights are not normalised: the square's integral is
                raise self.error(kw["weights"][1], f"weights of row {int(bad[0])} sum to {sums[bad[0]]:.6g}, not 1")
        if "tie" in kw:
            tok, v = kw["tie"]
            if not (isinstance(v, lark.Tree) and v.data == "name_ref"):
                raise self.error(v, "tie expects the name of another sum node")
            tie = self.lookup(v.children[0])
            if tie.kind != "sum":
                raise self.error(v, f"tie target '{v.children[0]}' is not a sum node")
            if weights is not None:
                raise self.error(tok, "a tied sum uses its target's weights; drop 'weights'")
            if mask is None and tie.mask is not None:
                mask = tie.mask
        return builder.summate(*kids, size=size, weights=weights, mask=mask, tie=tie)

    def template_node(self, func_tok, size, pos_args, kw):
        """Bind the call's arguments to the template's declared signature, check each where it
        stands, then build; an error from inside the template is reported at the call."""
        tpl = TEMPLATES[str(func_tok)]
        variables, options = tpl.bind(pos_args, kw, self.template_arg, self.error, func_tok)
        ctx = TemplateContext(self, func_tok)
        try:
            return tpl.fn(ctx, size, variables, **options)
        except SourceError:
            raise
        except PCError as e:
            raise self.error(func_tok, f"{tpl.name}: {e}") from None

    def template_arg(self, v):
        if isinstance(v, lark.Tree) and v.data == "name_ref":
            name = str(v.children[0])
            if name in self.var_arrays:
                return list(self.var_arrays[name])
            if name in self.var_index:
                return [self.var_index[name]]
            if name in self.nodes:
                return self.lookup(v.children[0])
            raise self.error(v, f"unknown name '{name}'")
        return self.value(v)

    # -- values -----------------------------------------------------------------------------
    def variable(self, arg) -> tuple[int, object]:
        if isinstance(arg, lark.Tree) and arg.data == "name_ref":
            tok = arg.children[0]
            name = str(tok)
            if name in self.var_arrays:
                raise self.error(tok, f"'{name}' is an array of variables; pick one, e.g. {name}[0]")
        elif isinstance(arg, lark.Tree) and arg.data == "item_ref":
            tok, idx = arg.children
            name = f"{tok}[{int(idx)}]"
            if str(tok) in self.var_arrays and name not in self.var_index:
                raise self.error(
                    idx, f"index {int(idx)} is out of range for '{tok}' (0..{len(self.var_arrays[str(tok)]) - 1})"
                )
        else:
            raise self.error(arg, "expected a variable")
        if name not in self.var_index:
            raise self.error(tok, f"unknown variable '{name}'; declare it with 'var {tok} : binary'")
        return self.var_index[name], tok

    def value(self, v, depth: int = 0):
        if depth > MAX_NESTING:
            raise self.error(v, f"lists nested more than {MAX_NESTING} deep are beyond the limit")
        if isinstance(v, lark.Tree):
            if v.data == "number":
                text = str(v.children[0])
                return int(text) if text.lstrip("+-").isdigit() else float(text)
            if v.data == "string":
                return str(v.children[0])[1:-1]
            if v.data == "list":
                return [self.value(c, depth + 1) for c in v.children if c is not None]
            if v.data == "name_ref":
                return str(v.children[0])
        raise self.error(v, "expected a number, a string or a list")

    def array(self, v) -> np.ndarray:
        val = self.value(v)
        try:
            arr = np.asarray(val, dtype=np.float64)
        except (ValueError, TypeError, OverflowError):
            raise self.error(
                v, "expected a (nested) list of numbers of regular shape, each within the range of a float"
            ) from None
        return arr
