"""Poisson: counts with rate lambda, P(x) = lambda^x e^-lambda / x!."""

from __future__ import annotations

from dataclasses import dataclass

from .base import mix, observed_flows
from .counting import TRITON_LOG_FACTORIAL, CountFamily
from .declared import Param
from .lazy import torch
from .one_rate import OneRate
from .registry import register


@register
@dataclass(frozen=True)
class Poisson(OneRate, CountFamily):
    """IR `rate [n]` > 0; in the module `log_rate [m]`, drawn from log U(0.5, 5)."""

    name = "poisson"
    declared = (Param("rate", draw=(0.5, 5.0)),)

    @staticmethod
    def _lp(log_rate, x):
        xf = x.to(log_rate.dtype)
        return xf * log_rate - log_rate.exp() - torch.lgamma(xf + 1)

    def log_probs(self, part, p, xv):
        return self._lp(p["log_rate"].unsqueeze(1), xv)

    def mode(self, part, p):
        k = torch.floor(p["log_rate"].exp()).long()
        return k, self._lp(p["log_rate"], k)

    def sample(self, part, p, rows, gen):
        return torch.poisson(p["log_rate"][rows].exp(), generator=gen).long()

    def stats(self, part, p, vars_t, f, x_int, x_real):
        xv, fo = observed_flows(part, vars_t, f, x_int, x_real)
        return {"w": fo.sum(1), "wx": (fo * xv.to(f.dtype)).sum(1), "missing": (f - fo).sum(1)}

    def m_step(self, part, h, s, a, pc, dtype, entropy=None):
        """rate <- (S + (F_miss + pc) rate) / (W + F_miss + pc): missing flow and pseudocount
        count as observations at the current rate."""
        rate = h.log_rate.exp()
        w, wx, miss = (s[k].to(rate.dtype) for k in ("w", "wx", "missing"))
        den = w + miss + pc
        new = torch.where(den > 0, (wx + (miss + pc) * rate) / den.clamp_min(1e-300), rate)
        h.log_rate.copy_(mix(rate, new, a).clamp_min(1e-30).log())

    triton_snippet = (
        TRITON_LOG_FACTORIAL
        + """
log_rate = tl.load(p0 + offs_m, mask=mask_m, other=0.0)
lp = xf * log_rate[:, None] - tl.exp(log_rate)[:, None] - log_fact"""
    )
    triton_doc = "p0 = log rate [M]"
