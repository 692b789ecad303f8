"""Gaussian: a normal density on a real variable."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..distributions import LOG_MIN_STD, MIN_STD, log_array, require
from ..errors import ParameterError, StructureError
from .base import Family, mix, observed_flows
from .lazy import torch
from .registry import register


@register
@dataclass(frozen=True)
class Gaussian(Family):
    """IR `mean [n]`, `std [n]`; in the module `mean`, `log_std`. Every evaluation floors the
    standard deviation at MIN_STD (1e-6): any std > 0 is valid, and a smaller one (1e-40, or a
    log-std that gradient steps drove towards -inf) is evaluated as MIN_STD, so that no valid
    parameters give NaN or an infinite density."""

    name = "gaussian"
    param_names = ("mean", "std")
    is_real = True
    min_std = 1e-3  # the M-step's variance floor, larger than the evaluation floor

    def param_shapes(self, n):
        return {"mean": (n,), "std": (n,)}

    def random_params(self, n, rng):
        return {"mean": rng.normal(0.0, 1.0, size=n).astype(np.float32), "std": np.ones(n, dtype=np.float32)}

    def check_params(self, node, params, n):
        mean = require(node, params, "mean", (n,))
        std = require(node, params, "std", (n,))
        if not np.all(np.isfinite(mean)):
            raise ParameterError(node, "gaussian mean must be finite")
        if not np.all(np.isfinite(std)) or np.any(std <= 0):
            raise ParameterError(node, f"gaussian std must be finite and > 0, got {std.tolist()[:8]}")

    @classmethod
    def from_nx(cls, node, values):
        if values.size != 2:
            raise StructureError(node, f"gaussian params are [mean, std], got {values.tolist()[:8]}")
        return cls(), {"mean": values[:1].astype(np.float32), "std": values[1:].astype(np.float32)}

    # -- the module's tensors: N(0, 1) means with unit std when drawn --------------------------
    def runtime_empty(self, part, dtype):
        return {"mean": np.zeros(part.size, dtype=dtype), "log_std": np.zeros(part.size, dtype=dtype)}

    def runtime_from_ir(self, p, dst, sl, dtype):
        dst["mean"][sl] = np.asarray(p["mean"])
        dst["log_std"][sl] = log_array(np.maximum(np.asarray(p["std"], dtype=np.float64), MIN_STD))

    def runtime_to_ir(self, src, sl):
        return {
            "mean": src["mean"][sl].astype(np.float32),
            "std": np.exp(np.maximum(src["log_std"][sl], LOG_MIN_STD)).astype(np.float32),
        }

    def runtime_draw(self, h, sl, gen):
        h.mean[sl].normal_(generator=gen)
        h.log_std[sl] = 0.0

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
    def stats(self, part, vars_t, f, x_int, x_real):
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
