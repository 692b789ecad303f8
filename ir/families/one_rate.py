"""Families with one rate > 0 per node (exponential, Poisson): IR `rate [n]`, drawn from
U(*rate_draw); in the module `log_rate [m]`."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from ..distributions import log_array, require
from ..errors import ParameterError, StructureError
from .base import Family


class OneRate(Family):
    param_names = ("rate",)
    rate_draw: ClassVar[tuple[float, float]] = (0.5, 2.0)

    def param_shapes(self, n):
        return {"rate": (n,)}

    def random_params(self, n, rng):
        return {"rate": rng.uniform(*self.rate_draw, size=n).astype(np.float32)}

    def check_params(self, node, params, n):
        rate = require(node, params, "rate", (n,))
        if not np.all(np.isfinite(rate)) or np.any(rate <= 0):
            raise ParameterError(node, f"{self.name} rate must be finite and > 0, got {rate.tolist()[:8]}")

    @classmethod
    def from_nx(cls, node, values):
        if values.size != 1:
            raise StructureError(node, f"{cls.name} params are [rate], got {values.tolist()[:8]}")
        return cls(), {"rate": values.astype(np.float32)}

    def runtime_empty(self, part, dtype):
        return {"log_rate": np.zeros(part.size, dtype=dtype)}

    def runtime_from_ir(self, p, dst, sl, dtype):
        dst["log_rate"][sl] = log_array(p["rate"], dtype)

    def runtime_to_ir(self, src, sl):
        return {"rate": np.exp(src["log_rate"][sl].astype(np.float64)).astype(np.float32)}

    def runtime_draw(self, h, sl, gen):
        h.log_rate[sl].uniform_(*self.rate_draw, generator=gen).log_()

    def triton_tensors(self, p, part):
        return p["log_rate"], p["log_rate"]
