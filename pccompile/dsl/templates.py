"""Structure templates callable from the DSL: `root = hclt(x, latents=64, data="train.npy")`.

A template is a function (ctx, size, variables, **options) -> builder.Vec registered by name with
a declared signature (`Arg`s: type, range, default). The parser binds and checks every argument
against it before calling, so a wrong type or an out-of-range value is reported at the argument
itself; `variables` arrives as a list of variable indices. `ctx` resolves paths relative to the
.pc file, reports errors at the call, and exposes the declared variables.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REQUIRED = object()


@dataclass(frozen=True)
class Arg:
    """One option of a template: `kind` is int, float, str, bool (0 or 1) or shape (a list of
    positive integers); numbers must lie in [lo, hi]."""

    name: str
    kind: str
    default: object = REQUIRED
    lo: float | None = None
    hi: float | None = None
    help: str = ""

    def check(self, value) -> object:
        """The value converted to the declared kind; ValueError says what was expected."""
        if self.kind == "str":
            if not isinstance(value, str):
                raise ValueError("expected a string in double quotes")
            return value
        if self.kind == "shape":
            if not (isinstance(value, list) and value and all(isinstance(v, int) and v >= 1 for v in value)):
                raise ValueError("expected a list of positive integers such as [8, 8]")
            return value
        if self.kind in ("int", "bool"):
            if not isinstance(value, int):
                raise ValueError(f"expected an integer, got {_show(value)}")
            lo, hi = (0, 1) if self.kind == "bool" else (self.lo, self.hi)
            out = int(value)
        else:
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"expected a finite number, got {_show(value)}")
            lo, hi, out = self.lo, self.hi, float(value)
        if (lo is not None and out < lo) or (hi is not None and out > hi):
            raise ValueError(f"must be in {_fmt(lo)}..{_fmt(hi)}, got {_show(value)}")
        return bool(out) if self.kind == "bool" else out


def _fmt(v) -> str:
    if v is None:
        return ""
    return f"{int(v):,}" if float(v).is_integer() else f"{v:g}"


def _show(value) -> str:
    text = repr(value)
    return text if len(text) < 40 else text[:37] + "..."


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
