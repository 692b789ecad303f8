"""Structure templates callable from the DSL: `root = hclt(x, latents=64, data="train.npy")`.

A template is a function (ctx, size, variables, **options) -> builder.Vec registered by name with
a declared signature (`Arg`s: type, range, default). The parser binds and checks every argument
against it before calling, so a wrong type or an out-of-range value is reported at the argument
itself; `variables` arrives as a list of variable indices. `ctx` resolves paths relative to the
.pc file, reports errors at the call, and exposes the declared variables.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pccompile.ir.options import Range, Refused, convert, shown

REQUIRED = object()


@dataclass(frozen=True)
class Arg:
    """One option of a template: `kind` is int, float, str, bool (0 or 1) or shape (a list of
    positive integers); numbers must lie in [lo, hi]. The value goes through the typed
    converter every option shares (pccompile.ir.options)."""

    name: str
    kind: str
    default: object = REQUIRED
    lo: float | None = None
    hi: float | None = None
    help: str = ""

    @property
    def type(self):
        """The option's declared type, as the converter reads it."""
        if self.kind == "shape":
            return tuple[Annotated[int, Range(1, None)], ...]
        base = {"int": int, "float": float, "str": str, "bool": bool}[self.kind]
        if base in (int, float):
            return Annotated[base, Range(self.lo, self.hi)]
        return base

    def check(self, value) -> object:
        """The value converted to the declared kind; ValueError says what was expected."""
        try:
            out = convert(value, self.type)
        except Refused as e:
            raise ValueError(f"expects {e.expected}, got {shown(value)}") from None
        return list(out) if self.kind == "shape" else out


@dataclass(frozen=True)
class Template:
    name: str
    fn: Callable
    args: tuple[Arg, ...]

    def bind(self, pos_args: list, kw: dict, value_of: Callable, error: Callable, at) -> tuple[object, dict]:
        """(variables, options) of a call: the variables first, then options by position or by
        keyword, each converted and range-checked by its Arg. `value_of(tree)` reads an argument;
        `error(tree_or_token, message)` makes the located error raised for a bad one."""
        if not pos_args:
            raise error(at, f"{self.name} needs the variables first: {self.signature()}")
        if len(pos_args) - 1 > len(self.args):
            raise error(
                pos_args[len(self.args) + 1],
                f"{self.name} takes at most {len(self.args)} options after the variables: {self.signature()}",
            )
        given = {a.name: (v, v) for a, v in zip(self.args, pos_args[1:])}
        names = [a.name for a in self.args]
        for k, (k_tok, v) in kw.items():
            if k not in names:
                raise error(k_tok, f"{self.name} has no option '{k}'; expected {', '.join(names)}")
            if k in given:
                raise error(k_tok, f"{self.name}: option '{k}' is given twice")
            given[k] = (k_tok, v)
        options = {}
        for a in self.args:
            if a.name not in given:
                if a.default is REQUIRED:
                    raise error(at, f"{self.name} needs {a.name}=...: {self.signature()}")
                options[a.name] = a.default
                continue
            v = given[a.name][1]
            try:
                options[a.name] = a.check(value_of(v))
            except ValueError as e:
                raise error(v, f"{self.name}: {a.name} {e}") from None
        return value_of(pos_args[0]), options

    def signature(self) -> str:
        opts = ", ".join(a.name if a.default is REQUIRED else f"{a.name}={a.default!r}" for a in self.args)
        return f"{self.name}(VARIABLES, {opts})"


TEMPLATES: dict[str, Template] = {}


def template(name: str, *args: Arg):
    def deco(fn):
        TEMPLATES[name] = Template(name, fn, tuple(args))
        return fn

    return deco


class TemplateContext:
    def __init__(self, compiler, token):
        self._c, self._tok = compiler, token

    @property
    def variables(self):
        return self._c.variables

    @property
    def meta(self) -> dict:
        return self._c.meta

    def path(self, p: str) -> Path:
        path = Path(p)
        return path if path.is_absolute() else self._c.base_dir / path

    def error(self, message: str):
        return self._c.error(self._tok, message)
