"""Beta: shapes alpha and beta on a real variable in [0, 1], density
x^(alpha-1) (1-x)^(beta-1) / B(alpha, beta)."""

from __future__ import annotations

from dataclasses import dataclass

from .base import mix, observed_flows
from .declared import DeclaredParams, Param
from .gamma import standard_gamma
from .lazy import torch
from .registry import register

EDGE = 1e-6
"""Values are evaluated clamped to [EDGE, 1 - EDGE]: 0 and 1 (common in data) get a finite
density for every shape, where the exact one is 0 or infinite."""


def _log_beta(a, b):
    return torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)


def _newton_beta(a, b, mean_log, mean_log1m, steps: int = 30):
    """The (alpha, beta) maximising (alpha - 1) E[log x] + (beta - 1) E[log(1 - x)] - log B:
    a concave problem, so Newton's steps from the moments' estimate converge; a step that would
    leave the positive quadrant halves the parameter instead."""
    for _ in range(steps):
        ds, ts = torch.digamma(a + b), torch.polygamma(1, a + b)
        ga, gb = mean_log - torch.digamma(a) + ds, mean_log1m - torch.digamma(b) + ds
        haa, hbb = ts - torch.polygamma(1, a), ts - torch.polygamma(1, b)
        det = haa * hbb - ts * ts
        da, db = -(hbb * ga - ts * gb) / det, -(haa * gb - ts * ga) / det
        a = torch.where(a + da > 0, a + da, a / 2).clamp(1e-4, 1e6)
        b = torch.where(b + db > 0, b + db, b / 2).clamp(1e-4, 1e6)
    return a, b


@register
@dataclass(frozen=True)
class Beta(DeclaredParams):
    """IR `alpha [n]`, `beta [n]` > 0; in the module `log_alpha`, `log_beta`. Drawn from U(1, 3)
    each."""

    name = "beta"
    is_real = True
    support = (0.0, 1.0)
    declared = (Param("alpha", draw=(1.0, 3.0)), Param("beta", draw=(1.0, 3.0)))

    @staticmethod
    def _lp(log_a, log_b, x):
        a, b = log_a.exp(), log_b.exp()
        xc = x.clamp(EDGE, 1 - EDGE)
        lp = (a - 1) * xc.log() + (b - 1) * torch.log1p(-xc) - _log_beta(a, b)
        return torch.where((x >= 0) & (x <= 1), lp, torch.full_like(lp, float("-inf")))

    # -- inference ---------------------------------------------------------------------------
    def log_probs(self, part, p, xv):
        return self._lp(p["log_alpha"].unsqueeze(1), p["log_beta"].unsqueeze(1), xv)

    def mode(self, part, p):
        """The best of the interior mode (alpha, beta > 1) and the two clamped ends: with a
        shape below 1 the density is largest at an end."""
        a, b = p["log_alpha"].exp(), p["log_beta"].exp()
        inner = torch.where((a > 1) & (b > 1), (a - 1) / (a + b - 2).clamp_min(1e-30), torch.full_like(a, 0.5))
        cands = torch.stack([inner, torch.full_like(a, EDGE), torch.full_like(a, 1 - EDGE)], 1)
        lp = self._lp(p["log_alpha"].unsqueeze(1), p["log_beta"].unsqueeze(1), cands)
        best = lp.argmax(1, keepdim=True)
        return cands.gather(1, best).squeeze(1), lp.gather(1, best).squeeze(1)

    def sample(self, part, p, rows, gen):
        ga = standard_gamma(p["log_alpha"][rows].exp(), gen)
        gb = standard_gamma(p["log_beta"][rows].exp(), gen)
        return (ga / (ga + gb).clamp_min(1e-30)).clamp(0, 1)

    # -- learning: the MLE from the weighted means of log x and log(1 - x) ---------------------
    def stats(self, part, p, vars_t, f, x_int, x_real):
        xv, fo = observed_flows(part, vars_t, f, x_int, x_real)
        xc = xv.clamp(EDGE, 1 - EDGE)
        seen = fo > 0
        zero = torch.zeros_like(xv)
        la, lb = torch.where(seen, xc.log(), zero), torch.where(seen, torch.log1p(-xc), zero)
        return {
            "w": fo.sum(1),
            "wx": (fo * xv).sum(1),
            "wxx": (fo * xv * xv).sum(1),
            "wla": (fo * la).sum(1),
            "wlb": (fo * lb).sum(1),
            "missing": (f - fo).sum(1),
        }

    def m_step(self, part, h, s, a, pc, dtype, entropy=None):
        """Newton's steps from the method of moments' estimate. The pseudocount adds pc
        observations at the current parameters (their means of x, x^2, log x, log(1 - x))."""
        al, be = h.log_alpha.exp().double(), h.log_beta.exp().double()
        tot = al + be
        ds = torch.digamma(tot)
        w = s["w"].double() + pc
        safe = w > 0
        w = w.clamp_min(1e-300)
        m1 = (s["wx"].double() + pc * al / tot) / w
        m2 = (s["wxx"].double() + pc * al * (al + 1) / (tot * (tot + 1))) / w
        mla = (s["wla"].double() + pc * (torch.digamma(al) - ds)) / w
        mlb = (s["wlb"].double() + pc * (torch.digamma(be) - ds)) / w
        m1 = m1.clamp(EDGE, 1 - EDGE)
        var = m2 - m1 * m1
        c = torch.where(var > 0, m1 * (1 - m1) / var.clamp_min(1e-300) - 1, tot).clamp(1e-3, 1e6)
        a0, b0 = (m1 * c).clamp_min(1e-3), ((1 - m1) * c).clamp_min(1e-3)
        a_new, b_new = _newton_beta(a0, b0, mla, mlb)
        a_new, b_new = torch.where(safe, a_new, al), torch.where(safe, b_new, be)
        h.log_alpha.copy_(mix(al, a_new, a).log().to(h.log_alpha.dtype))
        h.log_beta.copy_(mix(be, b_new, a).log().to(h.log_beta.dtype))

    # -- Triton ------------------------------------------------------------------------------
    triton_snippet = """\
alpha = tl.load(p0 + offs_m, mask=mask_m, other=1.0)
beta = tl.load(p0 + M + offs_m, mask=mask_m, other=1.0)
log_beta_fn = tl.load(p1 + offs_m, mask=mask_m, other=0.0)
xe = tl.minimum(tl.maximum(xv, 1e-6), 1.0 - 1e-6)  # the ends clamped
lp = (alpha[:, None] - 1.0) * tl.log(xe) + (beta[:, None] - 1.0) * tl.log(1.0 - xe) - log_beta_fn[:, None]
lp = tl.where((xv >= 0) & (xv <= 1), lp, float("-inf"))  # no density outside [0, 1]"""
    triton_doc = "p0 = [alpha [M], beta [M]], p1 = log B(alpha, beta) [M]"

    def triton_tensors(self, p, part):
        a, b = p["log_alpha"].exp(), p["log_beta"].exp()
        return torch.cat([a, b]).contiguous(), _log_beta(a, b)
