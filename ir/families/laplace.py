"""Laplace: location mu and scale b on a real variable, density e^(-|x - mu| / b) / (2 b)."""

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
class Laplace(DeclaredParams):
    """IR `loc [n]`, `scale [n]` > 0; in the module `loc`, `log_scale`, the evaluation's scale
    floored at MIN_STD as the Gaussian's std. Drawn as N(0, 1) locations with unit scale.

    The MLE's location is a weighted median, which batches cannot add up to. EM takes instead
    one reweighted least-squares step per M-step, from statistics at the current location: the
    weights w / |x - mu| turn |x - mu| into a quadratic that lies above it and touches it there,
    so each step can only raise the likelihood (a generalised EM step), and the steps converge to
    the median."""

    name = "laplace"
    is_real = True
    declared = (Param("loc", kind="real", draw=None), Param("scale", draw=(1.0, 1.0), floor=MIN_STD))
    min_scale = 1e-3  # the M-step's floor, as the Gaussian's min_std

    @staticmethod
    def _lp(loc, log_scale, x):
        log_b = log_scale.clamp_min(LOG_MIN_STD)
        return -math.log(2.0) - log_b - (x - loc).abs() * torch.exp(-log_b)

    # -- inference ---------------------------------------------------------------------------
    def log_probs(self, part, p, xv):
        return self._lp(p["loc"].unsqueeze(1), p["log_scale"].unsqueeze(1), xv)

    def mode(self, part, p):
        return p["loc"], self._lp(p["loc"], p["log_scale"], p["loc"])

    def sample(self, part, p, rows, gen):
        u = torch.rand(rows.shape, generator=gen, device=rows.device, dtype=p["loc"].dtype) - 0.5
        b = p["log_scale"][rows].clamp_min(LOG_MIN_STD).exp()
        return p["loc"][rows] - b * torch.sign(u) * torch.log1p(-2 * u.abs())

    # -- learning: statistics at the current location ------------------------------------------
    def stats(self, part, p, vars_t, f, x_int, x_real):
        xv, fo = observed_flows(part, vars_t, f, x_int, x_real)
        b = p["log_scale"].detach().clamp_min(LOG_MIN_STD).exp().unsqueeze(1)
        d = (xv - p["loc"].detach().unsqueeze(1)).abs()
        inv = fo / torch.maximum(d, 1e-6 * b)  # the reweighting, bounded where x sits on mu
        return {
            "w": fo.sum(1),
            "wd": (fo * d).sum(1),
            "wi": inv.sum(1),
            "wix": (inv * xv).sum(1),
            "missing": (f - fo).sum(1),
        }

    def m_step(self, part, h, s, a, pc, dtype, entropy=None):
        """mu <- sum (w / d) x / sum (w / d); b <- sum w d / sum w, d = |x - mu| at the current
        mu. The pseudocount adds pc observations at distance b from the current mu."""
        loc, b = h.loc, h.log_scale.exp()
        wi = s["wi"].to(loc.dtype) + pc / b
        w = s["w"].to(loc.dtype) + pc
        loc_new = torch.where(wi > 0, (s["wix"] + pc * loc / b) / wi.clamp_min(1e-300), loc)
        b_new = torch.where(w > 0, (s["wd"] + pc * b) / w.clamp_min(1e-300), b).clamp_min(self.min_scale)
        h.loc.copy_(mix(loc, loc_new, a))
        h.log_scale.copy_(mix(b, b_new, a).clamp_min(self.min_scale).log())

    # -- Triton ------------------------------------------------------------------------------
    triton_snippet = """\
loc = tl.load(p0 + offs_m, mask=mask_m, other=0.0)
log_b = tl.load(p1 + offs_m, mask=mask_m, other=0.0)
lp = -0.6931471805599453 - log_b[:, None] - tl.abs(xv - loc[:, None]) * tl.exp(-log_b)[:, None]"""
    triton_doc = "p0 = loc [M], p1 = log scale [M] (floored)"

    def triton_tensors(self, p, part):
        return p["loc"], p["log_scale"].clamp_min(LOG_MIN_STD)
