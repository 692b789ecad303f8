"""Gamma: shape k and rate beta on a real variable, density beta^k x^(k-1) e^(-beta x) / Gamma(k)
for x > 0. Also the draws of Gamma variables that the Beta and negative binomial samplers use."""

from __future__ import annotations

from dataclasses import dataclass

from .base import mix, observed_flows
from .declared import DeclaredParams, Param
from .lazy import torch
from .registry import register

TINY = 1e-30
"""x = 0 is evaluated at TINY: finite for every shape, and exact for k = 1 (the exponential)."""


def standard_gamma(k, gen):
    """One Gamma(k, 1) draw per entry of k, by Marsaglia and Tsang's squeeze (k < 1 through
    Gamma(k + 1) U^(1/k)), from the generator `gen` so that sampling is reproducible."""
    boost = k < 1
    kk = torch.where(boost, k + 1, k)
    d = kk - 1.0 / 3.0
    c = 1.0 / torch.sqrt(9.0 * d)
    out = torch.empty_like(kk)
    todo = torch.ones_like(kk, dtype=torch.bool)
    while bool(todo.any()):
        z = torch.randn(kk.shape, generator=gen, device=kk.device, dtype=kk.dtype)
        u = torch.rand(kk.shape, generator=gen, device=kk.device, dtype=kk.dtype).clamp_min(TINY)
        v = (1 + c * z) ** 3
        ok = (v > 0) & (u.log() < 0.5 * z * z + d - d * v + d * v.clamp_min(TINY).log())
        take = todo & ok
        out = torch.where(take, d * v, out)
        todo = todo & ~ok
    u = torch.rand(kk.shape, generator=gen, device=kk.device, dtype=kk.dtype).clamp_min(TINY)
    return torch.where(boost, out * u.pow(1.0 / k), out)


def solve_gamma_shape(gap):
    """The k with log k - digamma(k) = gap (> 0): the Gamma MLE's shape, where gap = log of the
    mean minus the mean of log x. Minka's closed-form start is within 1.5%; Newton steps in
    log k then reach float64 precision."""
    g = gap.double().clamp_min(1e-12)
    k = (3 - g + torch.sqrt((g - 3) ** 2 + 24 * g)) / (12 * g)
    for _ in range(6):
        step = (k.log() - torch.digamma(k) - g) / (1 - k * torch.polygamma(1, k))
        k = k * torch.exp(-step.clamp(-2, 2))
    return k.to(gap.dtype)


@register
@dataclass(frozen=True)
class Gamma(DeclaredParams):
    """IR `shape [n]`, `rate [n]` > 0; in the module `log_shape`, `log_rate`. Drawn with shape
    U(1, 3) and rate U(0.5, 2)."""

    name = "gamma"
    is_real = True
    support = (0.0, float("inf"))
    declared = (Param("shape", draw=(1.0, 3.0)), Param("rate", draw=(0.5, 2.0)))
    max_shape = 1e6  # the M-step's cap (std = mean / sqrt(k)), as the Gaussian floors its std

    @staticmethod
    def _lp(log_shape, log_rate, x):
        k = log_shape.exp()
        lp = k * log_rate - torch.lgamma(k) + (k - 1) * x.clamp_min(TINY).log() - log_rate.exp() * x
        return torch.where(x >= 0, lp, torch.full_like(lp, float("-inf")))

    # -- inference ---------------------------------------------------------------------------
    def log_probs(self, part, p, xv):
        return self._lp(p["log_shape"].unsqueeze(1), p["log_rate"].unsqueeze(1), xv)

    def mode(self, part, p):
        """(k - 1) / beta for k >= 1, else 0 (evaluated at TINY)."""
        k = p["log_shape"].exp()
        x = torch.where(k >= 1, (k - 1) * torch.exp(-p["log_rate"]), torch.zeros_like(k))
        return x, self._lp(p["log_shape"], p["log_rate"], x)

    def sample(self, part, p, rows, gen):
        return standard_gamma(p["log_shape"][rows].exp(), gen) * torch.exp(-p["log_rate"][rows])

    # -- learning: the MLE from the weighted means of x and log x ------------------------------
    def stats(self, part, p, vars_t, f, x_int, x_real):
        xv, fo = observed_flows(part, vars_t, f, x_int, x_real)
        lx = torch.where(fo > 0, xv.clamp_min(TINY).log(), torch.zeros_like(xv))
        return {"w": fo.sum(1), "wx": (fo * xv).sum(1), "wl": (fo * lx).sum(1), "missing": (f - fo).sum(1)}

    def m_step(self, part, h, s, a, pc, dtype, entropy=None):
        """k solves log k - digamma(k) = log E[x] - E[log x]; beta = k / E[x]. The pseudocount
        adds pc observations at the current parameters (E[x] = k / beta, E[log x] =
        digamma(k) - log beta)."""
        k, rate = h.log_shape.exp(), h.log_rate.exp()
        w = s["w"].to(k.dtype) + pc
        safe = w > 0
        w = w.clamp_min(1e-300)
        mean = (s["wx"] + pc * k / rate) / w
        mean_log = (s["wl"] + pc * (torch.digamma(k) - rate.log())) / w
        safe = safe & (mean > 0)
        gap = torch.where(safe, mean.clamp_min(TINY).log() - mean_log, torch.ones_like(k))
        k_new = solve_gamma_shape(gap).clamp_max(self.max_shape)
        rate_new = k_new / mean.clamp_min(TINY)
        h.log_shape.copy_(torch.where(safe, mix(k, k_new, a), k).clamp_min(TINY).log())
        h.log_rate.copy_(torch.where(safe, mix(rate, rate_new, a), rate).clamp_min(TINY).log())

    # -- Triton ------------------------------------------------------------------------------
    triton_snippet = """\
log_rate = tl.load(p0 + offs_m, mask=mask_m, other=0.0)
k = tl.load(p1 + offs_m, mask=mask_m, other=1.0)
lgamma_k = tl.load(p1 + M + offs_m, mask=mask_m, other=0.0)
lx = tl.log(tl.maximum(xv, 1e-30))
lp = k[:, None] * log_rate[:, None] - lgamma_k[:, None] + (k[:, None] - 1.0) * lx - tl.exp(log_rate)[:, None] * xv
lp = tl.where(xv >= 0, lp, float("-inf"))  # no density below 0"""
    triton_doc = "p0 = log rate [M], p1 = [shape k [M], lgamma(k) [M]]"

    def triton_tensors(self, p, part):
        k = p["log_shape"].exp()
        return p["log_rate"], torch.cat([k, torch.lgamma(k)]).contiguous()
