"""Gaussian: a normal density on a real variable."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..distributions import LOG_MIN_STD, MIN_STD
from .base import mix, observed_flows
from .declared import DeclaredParams, Param
from .lazy import torch
from .registry import register


@register
@dataclass(frozen=True)
class Gaussian(DeclaredParams):
    """IR `mean [n]`, `std [n]`; in the module `mean`, `log_std`. Every evaluation floors the
    standard deviation at MIN_STD (1e-6): any std > 0 is valid, and a smaller one (1e-40, or a
    log-std that gradient steps drove towards -inf) is evaluated as MIN_STD, so that no valid
    parameters give NaN or an infinite density."""

    name = "gaussian"
    is_real = True
    declared = (Param("mean", kind="real", draw=None), Param("std", draw=(1.0, 1.0), floor=MIN_STD))
    min_std = 1e-3  # the M-step's variance floor, larger than the evaluation floor

    # -- inference ---------------------------------------------------------------------------
    def log_probs(self, part, p, xv):
        log_std = p["log_std"].clamp_min(LOG_MIN_STD).unsqueeze(1)
        z = (xv - p["mean"].unsqueeze(1)) * torch.exp(-log_std)
        return -0.5 * z * z - log_std - 0.5 * math.log(2 * math.pi)

    def mode(self, part, p):
        return p["mean"], -p["log_std"].clamp_min(LOG_MIN_STD) - 0.5 * math.log(2 * math.pi)

    def sample(self, part, p, rows, gen):
        noise = torch.randn(rows.shape, generator=gen, device=rows.device, dtype=p["mean"].dtype)
        return p["mean"][rows] + p["log_std"][rows].clamp_min(LOG_MIN_STD).exp() * noise

    # -- learning: weighted moments, the pseudocount a prior at the current values ------------
    def stats(self, part, p, vars_t, f, x_int, x_real):
        xv, fo = observed_flows(part, vars_t, f, x_int, x_real)
        return {"w": fo.sum(1), "wx": (fo * xv).sum(1), "wxx": (fo * xv * xv).sum(1), "missing": (f - fo).sum(1)}

    def m_step(self, part, h, s, a, pc, dtype, entropy=None):
        mean, std = h.mean, h.log_std.exp()
        w = s["w"].to(mean.dtype)
        denom = w + pc
        safe = denom > 0
        m_new = torch.where(safe, (s["wx"] + pc * mean) / denom.clamp_min(1e-300), mean)
        ex2 = torch.where(safe, (s["wxx"] + pc * (std**2 + mean**2)) / denom.clamp_min(1e-300), std**2 + mean**2)
        var_new = (ex2 - m_new**2).clamp_min(self.min_std**2)
        h.mean.copy_(mix(mean, m_new, a))
        h.log_std.copy_(0.5 * mix(std**2, var_new, a).clamp_min(self.min_std**2).log())

    # -- Triton ------------------------------------------------------------------------------
    triton_snippet = """\
mean = tl.load(p0 + offs_m, mask=mask_m, other=0.0)
log_std = tl.load(p1 + offs_m, mask=mask_m, other=0.0)
z = (xv - mean[:, None]) * tl.exp(-log_std)[:, None]
lp = -0.5 * z * z - log_std[:, None] - 0.9189385332046727  # log sqrt(2 pi)"""
    triton_doc = "p0 = mean [M], p1 = log std [M] (floored)"

    def triton_tensors(self, p, part):
        return p["mean"], p["log_std"].clamp_min(LOG_MIN_STD)  # the std floor
