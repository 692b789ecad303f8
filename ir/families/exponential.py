"""Exponential: a density rate e^(-rate x) on a real variable, for x >= 0 (0 below)."""

from __future__ import annotations

from dataclasses import dataclass

from .base import mix, observed_flows
from .lazy import torch
from .one_rate import OneRate
from .registry import register


@register
@dataclass(frozen=True)
class Exponential(OneRate):
    """IR `rate [n]` > 0; in the module `log_rate [m]`, drawn from log U(0.5, 2)."""

    name = "exponential"
    is_real = True
    support = (0.0, float("inf"))

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
    def stats(self, part, p, vars_t, f, x_int, x_real):
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
