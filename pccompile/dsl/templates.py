"""Structure templates callable from the DSL: `root = hclt(x, latents=64, data="train.npy")`.

A template is a function (ctx, size, *args, **kwargs) -> builder.Vec registered by name. Variable
arguments arrive as lists of variable indices, node names as builder Vecs. `ctx` resolves paths
relative to the .pc file, reports errors at the call, and exposes the declared variables.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

TEMPLATES: dict[str, Callable] = {}


def template(name: str):
    def deco(fn):
        TEMPLATES[name] = fn
        return fn
    return deco


class TemplateContext:
    def __init__(self, compiler, token):
        self._c, self._tok = compiler, token

    @property
    def variables(self):
        return self._c.variables

    def path(self, p: str) -> Path:
        path = Path(p)
        return path if path.is_absolute() else self._c.base_dir / path

    def error(self, message: str):
        return self._c.error(self._tok, message)
