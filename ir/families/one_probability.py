"""Families with one probability `p` per node (Bernoulli, binomial): IR `p [n]`, drawn from
U(0.2, 0.8); in the module `logit [m]` of p."""

from __future__ import annotations

import numpy as np

from ..distributions import log_array, require
from ..errors import ParameterError
from .base import Family


class OneProbability(Family):
    param_names = ("p",)

    def param_shapes(self, n):
        return {"p": (n,)}

    def random_params(self, n, rng):
        return {"p": rng.uniform(0.2, 0.8, size=n).astype(np.float32)}

    def check_params(self, node, params, n):
        p = require(node, params, "p", (n,))
        if not np.all(np.isfinite(p)) or np.any(p < 0) or np.any(p > 1):
            raise ParameterError(node, f"{self.name} p must lie in [0, 1], got {p.tolist()[:8]}")

    def runtime_empty(self, part, dtype):
        return {"logit": np.zeros(part.size, dtype=dtype)}

    def runtime_from_ir(self, p, dst, sl, dtype):
        q = np.asarray(p["p"], dtype=np.float64)
        dst["logit"][sl] = log_array(q) - log_array(1 - q)

    def runtime_to_ir(self, src, sl):
        return {"p": (1 / (1 + np.exp(-src["logit"][sl].astype(np.float64)))).astype(np.float32)}

    def runtime_draw(self, h, sl, gen):
        q = h.logit[sl].uniform_(0.2, 0.8, generator=gen)
        q.copy_(q.log() - (1 - q).log())
