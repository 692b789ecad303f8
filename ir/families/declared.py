"""Families whose parameters are a few scalars per node, each declared once with its range:
the IR's shapes, checks, draws and networkx form, and the module's unconstrained tensors, all
follow from the declaration instead of being written out per family."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..distributions import log_array, require
from ..errors import ParameterError, StructureError
from .base import Family


@dataclass(frozen=True)
class Param:
    """One scalar parameter per node.

    `kind`: "positive" (> 0, kept as its log), "probability" (in [0, 1], kept as its logit) or
    "real" (finite, kept as is). `draw`: the initial law, uniform on [lo, hi] in the IR's
    units (lo = hi: that constant, drawing nothing from the generator); None draws N(0, 1).
    `floor`: values below it are stored as it (positive only)."""

    name: str
    kind: str = "positive"
    draw: tuple[float, float] | None = (0.5, 2.0)
    floor: float = 0.0

    @property
    def tensor(self) -> str:
        """The module's tensor name: `log_rate`, `logit` (of p), `mean`."""
        if self.kind == "positive":
            return f"log_{self.name}"
        if self.kind == "probability":
            return "logit" if self.name == "p" else f"logit_{self.name}"
        return self.name

    def check(self, family: str, node: str, v: np.ndarray) -> None:
        if self.kind == "probability":
            if not np.all(np.isfinite(v)) or np.any(v < 0) or np.any(v > 1):
                raise ParameterError(node, f"{family} {self.name} must lie in [0, 1], got {v.tolist()[:8]}")
        elif not np.all(np.isfinite(v)) or (self.kind == "positive" and np.any(v <= 0)):
            bound = " and > 0" if self.kind == "positive" else ""
            raise ParameterError(node, f"{family} {self.name} must be finite{bound}, got {v.tolist()[:8]}")

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n initial values in the IR's units (float32)."""
        if self.draw is None:
            return rng.normal(0.0, 1.0, size=n).astype(np.float32)
        if self.draw[0] == self.draw[1]:
            return np.full(n, self.draw[0], dtype=np.float32)
        return rng.uniform(*self.draw, size=n).astype(np.float32)

    def to_tensor(self, v) -> np.ndarray:
        v = np.asarray(v, dtype=np.float64)
        if self.kind == "positive":
            return log_array(np.maximum(v, self.floor))
        if self.kind == "probability":
            return log_array(v) - log_array(1 - v)
        return v

    def from_tensor(self, t: np.ndarray) -> np.ndarray:
        t = t.astype(np.float64)
        if self.kind == "positive":
            return np.maximum(np.exp(t), self.floor).astype(np.float32)
        if self.kind == "probability":
            return (1 / (1 + np.exp(-t))).astype(np.float32)
        return t.astype(np.float32)


class DeclaredParams(Family):
    """A family whose parameters are the `declared` scalars, in the IR's order."""

    declared: ClassVar[tuple[Param, ...]] = ()

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        cls.param_names = tuple(q.name for q in cls.declared)

    def param_shapes(self, n):
        return {q.name: (n,) for q in self.declared}

    def random_params(self, n, rng):
        return {q.name: q.sample(n, rng) for q in self.declared}

    def check_params(self, node, params, n):
        for q in self.declared:
            q.check(self.name, node, require(node, params, q.name, (n,)))

    @classmethod
    def from_nx(cls, node, values):
        names = [q.name for q in cls.declared]
        if values.size != len(names):
            raise StructureError(node, f"{cls.name} params are [{', '.join(names)}], got {values.tolist()[:8]}")
        return cls(), {k: values[i : i + 1].astype(np.float32) for i, k in enumerate(names)}

    def runtime_empty(self, part, dtype):
        return {q.tensor: np.zeros(part.size, dtype=dtype) for q in self.declared}

    def runtime_from_ir(self, p, dst, sl, dtype):
        for q in self.declared:
            dst[q.tensor][sl] = q.to_tensor(p[q.name])

    def runtime_to_ir(self, src, sl):
        return {q.name: q.from_tensor(src[q.tensor][sl]) for q in self.declared}

    def runtime_draw(self, h, sl, gen):
        for q in self.declared:
            t = getattr(h, q.tensor)[sl]
            if q.draw is None:
                t.normal_(generator=gen)
                continue
            if q.draw[0] == q.draw[1]:
                t.fill_(float(q.to_tensor(q.draw[0])))
                continue
            t.uniform_(*q.draw, generator=gen)
            if q.kind == "positive":
                t.log_()
            elif q.kind == "probability":
                t.copy_(t.log() - (1 - t).log())
