"""Log-normal: log x ~ N(mu, sigma) on a real variable, for x > 0 (0 elsewhere)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..distributions import LOG_MIN_STD, MIN_STD, log_array, require
from ..errors import ParameterError, StructureError
from .base import Family, mix, observed_flows
from .lazy import torch
from .registry import register

_TINY = 1e-30  # log x is taken of x clamped here, so that 0 and missing entries stay finite


@register
@dataclass(frozen=True)
class LogNormal(Family):
    """IR `mu [n]`, `sigma [n]` (of log x); in the module `mu`, `log_sigma`, the evaluation's
    sigma floored at MIN_STD as the Gaussian's. Drawn as N(0, 1) mu with unit sigma."""

    name = "lognormal"
    param_names = ("mu", "sigma")
    is_real = True
    support = (0.0, float("inf"))
    min_std = 1e-3  # the M-step's floor of sigma

    def param_shapes(self, n):
        return {"mu": (n,), "sigma": (n,)}

    def random_params(self, n, rng):
        return {"mu": rng.normal(0.0, 1.0, size=n).astype(np.float32), "sigma": np.ones(n, dtype=np.float32)}

    def check_params(self, node, params, n):
        mu = require(node, params, "mu", (n,))
        sigma = require(node, params, "sigma", (n,))
        if not np.all(np.isfinite(mu)):
            raise ParameterError(node, "lognormal mu must be finite")
        if not np.all(np.isfinite(sigma)) or np.any(sigma <= 0):
            raise ParameterError(node, f"lognormal sigma must be finite and > 0, got {sigma.tolist()[:8]}")

    @classmethod
    def from_nx(cls, node, values):
        if values.size != 2:
            raise StructureError(node, f"lognormal params are [mu, sigma], got {values.tolist()[:8]}")
        return cls(), {"mu": values[:1].astype(np.float32), "sigma": values[1:].astype(np.float32)}

    # -- the module's tensors ----------------------------------------------------------------
    def runtime_empty(self, part, dtype):
        return {"mu": np.zeros(part.size, dtype=dtype), "log_sigma": np.zeros(part.size, dtype=dtype)}

    def runtime_from_ir(self, p, dst, sl, dtype):
        dst["mu"][sl] = np.asarray(p["mu"])
        dst["log_sigma"][sl] = log_array(np.maximum(np.asarray(p["sigma"], dtype=np.float64), MIN_STD))

    def runtime_to_ir(self, src, sl):
        return {
            "mu": src["mu"][sl].astype(np.float32),
            "sigma": np.exp(np.maximum(src["log_sigma"][sl], LOG_MIN_STD)).astype(np.float32),
        }

    def runtime_draw(self, h, sl, gen):
        h.mu[sl].normal_(generator=gen)
        h.log_sigma[sl] = 0.0

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
    def stats(self, part, vars_t, f, x_int, x_real):
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
