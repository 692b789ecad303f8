"""Log-normal: log x ~ N(mu, sigma) on a real variable, for x > 0 (0 elsewhere)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..distributions import LOG_MIN_STD, MIN_STD
from .base import mix, observed_flows
from .declared import DeclaredParams, Param
from .lazy import torch
from .registry import register

_TINY = 1e-30  # log x is taken of x clamped here, so that 0 and missing entries stay finite


@register
@dataclass(frozen=True)
class LogNormal(DeclaredParams):
    """IR `mu [n]`, `sigma [n]` (of log x); in the module `mu`, `log_sigma`, the evaluation's
    sigma floored at MIN_STD as the Gaussian's. Drawn as N(0, 1) mu with unit sigma."""

    name = "lognormal"
    is_real = True
    support = (0.0, float("inf"))
    declared = (Param("mu", kind="real", draw=None), Param("sigma", draw=(1.0, 1.0), floor=MIN_STD))
    min_std = 1e-3  # the M-step's floor of sigma

    # -- inference ---------------------------------------------------------------------------
    def log_probs(self, part, p, xv):
        log_sigma = p["log_sigma"].clamp_min(LOG_MIN_STD).unsqueeze(1)
        lx = xv.clamp_min(_TINY).log()
        z = (lx - p["mu"].unsqueeze(1)) * torch.exp(-log_sigma)
        lp = -0.5 * z * z - log_sigma - lx - 0.5 * math.log(2 * math.pi)
        return torch.where(xv > 0, lp, torch.full_like(lp, float("-inf")))

    def mode(self, part, p):
        """The density's mode, exp(mu - sigma^2), where log p = sigma^2 / 2 - log sigma - mu - log sqrt(2 pi)."""
        log_sigma = p["log_sigma"].clamp_min(LOG_MIN_STD)
        var = torch.exp(2 * log_sigma)
        return torch.exp(p["mu"] - var), 0.5 * var - log_sigma - p["mu"] - 0.5 * math.log(2 * math.pi)

    def sample(self, part, p, rows, gen):
        noise = torch.randn(rows.shape, generator=gen, device=rows.device, dtype=p["mu"].dtype)
        return torch.exp(p["mu"][rows] + p["log_sigma"][rows].clamp_min(LOG_MIN_STD).exp() * noise)

    # -- learning: the Gaussian's weighted moments, of log x -----------------------------------
    def stats(self, part, p, vars_t, f, x_int, x_real):
        xv, fo = observed_flows(part, vars_t, f, x_int, x_real)
        lx = torch.where(fo > 0, xv.clamp_min(_TINY).log(), torch.zeros_like(xv))
        return {"w": fo.sum(1), "wl": (fo * lx).sum(1), "wll": (fo * lx * lx).sum(1), "missing": (f - fo).sum(1)}

    def m_step(self, part, h, s, a, pc, dtype, entropy=None):
        mu, sigma = h.mu, h.log_sigma.exp()
        denom = s["w"].to(mu.dtype) + pc
        safe = denom > 0
        m_new = torch.where(safe, (s["wl"] + pc * mu) / denom.clamp_min(1e-300), mu)
        e2 = torch.where(safe, (s["wll"] + pc * (sigma**2 + mu**2)) / denom.clamp_min(1e-300), sigma**2 + mu**2)
        var_new = (e2 - m_new**2).clamp_min(self.min_std**2)
        h.mu.copy_(mix(mu, m_new, a))
        h.log_sigma.copy_(0.5 * mix(sigma**2, var_new, a).clamp_min(self.min_std**2).log())

    # -- Triton ------------------------------------------------------------------------------
    triton_snippet = """\
mu = tl.load(p0 + offs_m, mask=mask_m, other=0.0)
log_sigma = tl.load(p1 + offs_m, mask=mask_m, other=0.0)
lx = tl.log(tl.maximum(xv, 1e-30))
z = (lx - mu[:, None]) * tl.exp(-log_sigma)[:, None]
lp = -0.5 * z * z - log_sigma[:, None] - lx - 0.9189385332046727  # log sqrt(2 pi)
lp = tl.where(xv > 0, lp, float("-inf"))  # no density at x <= 0"""
    triton_doc = "p0 = mu [M], p1 = log sigma [M] (floored)"

    def triton_tensors(self, p, part):
        return p["mu"], p["log_sigma"].clamp_min(LOG_MIN_STD)
