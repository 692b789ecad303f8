"""Exponential: a density rate e^(-rate x) on a real variable, for x >= 0 (0 below)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..distributions import log_array, require
from ..errors import ParameterError, StructureError
from .base import Family, mix, observed_flows
from .lazy import torch
from .registry import register


@register
@dataclass(frozen=True)
class Exponential(Family):
    """IR `rate [n]` > 0; in the module `log_rate [m]`, drawn from log U(0.5, 2)."""

    name = "exponential"
    param_names = ("rate",)
    is_real = True
    support = (0.0, float("inf"))

    def param_shapes(self, n):
        return {"rate": (n,)}

    def random_params(self, n, rng):
        return {"rate": rng.uniform(0.5, 2.0, size=n).astype(np.float32)}

    def check_params(self, node, params, n):
        rate = require(node, params, "rate", (n,))
        if not np.all(np.isfinite(rate)) or np.any(rate <= 0):
            raise ParameterError(node, f"exponential rate must be finite and > 0, got {rate.tolist()[:8]}")

    @classmethod
    def from_nx(cls, node, values):
        if values.size != 1:
            raise StructureError(node, f"exponential params are [rate], got {values.tolist()[:8]}")
        return cls(), {"rate": values.astype(np.float32)}

    # -- the module's tensors ----------------------------------------------------------------
    def runtime_empty(self, part, dtype):
        return {"log_rate": np.zeros(part.size, dtype=dtype)}

    def runtime_from_ir(self, p, dst, sl, dtype):
        dst["log_rate"][sl] = log_array(p["rate"], dtype)

    def runtime_to_ir(self, src, sl):
        return {"rate": np.exp(src["log_rate"][sl].astype(np.float64)).astype(np.float32)}

    def runtime_draw(self, h, sl, gen):
        h.log_rate[sl].uniform_(0.5, 2.0, generator=gen).log_()

    # -- inference ---------------------------------------------------------------------------
    def log_probs(self, part, p, xv):
        log_rate = p["log_rate"].unsqueeze(1)
        lp = log_rate - log_rate.exp() * xv.clamp_min(0)
        return torch.where(xv >= 0, lp, torch.full_like(lp, float("-inf")))

    def mode(self, part, p):
        return torch.zeros_like(p["log_rate"]), p["log_rate"]

    def sample(self, part, p, rows, gen):
        u = torch.rand(rows.shape, generator=gen, device=rows.device, dtype=p["log_rate"].dtype)
        return -torch.log1p(-u) * torch.exp(-p["log_rate"][rows])

    # -- learning: rate = flow / (flow-weighted sum of x), pc pseudo-observations at the current mean
    def stats(self, part, vars_t, f, x_int, x_real):
        xv, fo = observed_flows(part, vars_t, f, x_int, x_real)
        return {"w": fo.sum(1), "wx": (fo * xv).sum(1), "missing": (f - fo).sum(1)}

    def m_step(self, part, h, s, a, pc, dtype, entropy=None):
        rate = h.log_rate.exp()
        w, wx = s["w"].to(rate.dtype), s["wx"].to(rate.dtype)
        num, den = w + pc, wx + pc / rate
        new = torch.where((num > 0) & (den > 0), num / den.clamp_min(1e-300), rate)
        h.log_rate.copy_(mix(rate, new, a).clamp_min(1e-30).log())

    # -- Triton ------------------------------------------------------------------------------
    triton_snippet = """\
log_rate = tl.load(p0 + offs_m, mask=mask_m, other=0.0)
lp = log_rate[:, None] - tl.exp(log_rate)[:, None] * tl.maximum(xv, 0.0)
lp = tl.where(xv >= 0, lp, float("-inf"))  # no density below 0"""
    triton_doc = "p0 = log rate [M]"

    def triton_tensors(self, p, part):
        return p["log_rate"], p["log_rate"]
