"""Negative binomial: failures before the r-th success of probability p,
P(x) = Gamma(x + r) / (Gamma(r) x!) p^r (1 - p)^x, for any r > 0 (the geometric is r = 1)."""

from __future__ import annotations

from dataclasses import dataclass

from .base import LOG_SIGMOID, mix, observed_flows
from .counting import TRITON_LOG_FACTORIAL, CountFamily, triton_lgamma
from .declared import DeclaredParams, Param
from .gamma import standard_gamma
from .lazy import F, torch
from .registry import register


@register
@dataclass(frozen=True)
class NegativeBinomial(DeclaredParams, CountFamily):
    """IR `r [n]` > 0, `p [n]` in [0, 1]; in the module `log_r`, `logit` (of p). Drawn with
    r from U(1, 5) and p from U(0.2, 0.8).

    For a given r the MLE's p is closed; r's has no finite statistics (it needs the mean of
    digamma(x + r)). The statistics are therefore taken at the current r, and each M-step is one
    Newton step on the likelihood with p at its optimum (the profile likelihood), in log r, then
    the closed-form p at the new r."""

    name = "negative_binomial"
    declared = (Param("r", draw=(1.0, 5.0)), Param("p", kind="probability", draw=(0.2, 0.8)))
    r_range = (1e-4, 1e6)

    @staticmethod
    def _lp(log_r, logit, x):
        r, xf = log_r.exp(), x.to(log_r.dtype)
        log_c = torch.lgamma(xf + r) - torch.lgamma(r) - torch.lgamma(xf + 1)
        return log_c + r * F.logsigmoid(logit) + xf * F.logsigmoid(-logit)

    # -- inference ---------------------------------------------------------------------------
    def log_probs(self, part, p, xv):
        return self._lp(p["log_r"].unsqueeze(1), p["logit"].unsqueeze(1), xv)

    def mode(self, part, p):
        """floor((r - 1)(1 - p) / p) for r > 1, else 0."""
        r = p["log_r"].exp()
        odds = torch.exp(-p["logit"])  # (1 - p) / p
        k = torch.where(r > 1, torch.floor((r - 1) * odds), torch.zeros_like(r)).long()
        return k, self._lp(p["log_r"], p["logit"], k)

    def sample(self, part, p, rows, gen):
        """A Poisson draw whose rate is Gamma(r, (1 - p) / p): the negative binomial's mixture."""
        rate = standard_gamma(p["log_r"][rows].exp(), gen) * torch.exp(-p["logit"][rows])
        return torch.poisson(rate, generator=gen).long()

    # -- learning ----------------------------------------------------------------------------
    def stats(self, part, p, vars_t, f, x_int, x_real):
        xv, fo = observed_flows(part, vars_t, f, x_int, x_real)
        xr = xv.to(f.dtype) + p["log_r"].detach().exp().unsqueeze(1).to(f.dtype)
        return {
            "w": fo.sum(1),
            "wx": (fo * xv.to(f.dtype)).sum(1),
            "wpsi": (fo * torch.digamma(xr)).sum(1),
            "wtri": (fo * torch.polygamma(1, xr)).sum(1),
            "missing": (f - fo).sum(1),
        }

    def _newton_r(self, r, w, wx, wpsi, wtri):
        """One Newton step in log r on the profile likelihood, whose derivative in r is
        sum digamma(x + r) - W digamma(r) + W log p(r), p(r) = r W / (r W + S); an ascent step
        of 0.5 where it is not concave, and at most a factor e either way."""
        denom = (r * w + wx).clamp_min(1e-300)
        g = wpsi - w * torch.digamma(r) + w * torch.log((r * w / denom).clamp_min(1e-300))
        hess = wtri - w * torch.polygamma(1, r) + w * wx / (r * denom)
        gu, hu = r * g, r * r * hess + r * g
        step = torch.where(hu < 0, -gu / torch.where(hu < 0, hu, -torch.ones_like(hu)), 0.5 * torch.sign(gu))
        return torch.where(w > 0, r * torch.exp(step.clamp(-1, 1)), r).clamp(*self.r_range)

    def m_step(self, part, h, s, a, pc, dtype, entropy=None):
        """r by `_newton_r`; then p <- (T + pc / 2) / (T + S' + pc) with T = r (W + F_miss)
        trials' worth of successes and S' = S + F_miss r (1 - p) / p failures (missing flow at
        its expectation under the current parameters)."""
        r, q = h.log_r.exp().double(), torch.sigmoid(h.logit).double()
        w, wx, wpsi, wtri, miss = (s[k].double() for k in ("w", "wx", "wpsi", "wtri", "missing"))
        r_new = self._newton_r(r, w, wx, wpsi, wtri)
        succ = r_new * (w + miss)
        fails = wx + miss * r * (1 - q) / q.clamp_min(1e-30)
        den = succ + fails + pc
        q_new = torch.where(den > 0, (succ + pc / 2) / den.clamp_min(1e-300), q)
        r_mix, q_mix = mix(r, r_new, a), mix(q, q_new, a).clamp(1e-12, 1 - 1e-12)
        h.log_r.copy_(r_mix.log().to(h.log_r.dtype))
        h.logit.copy_((q_mix.log() - (1 - q_mix).log()).to(h.logit.dtype))

    # -- Triton ------------------------------------------------------------------------------
    triton_snippet = (
        TRITON_LOG_FACTORIAL
        + "\n"
        + """\
logit = tl.load(p0 + offs_m, mask=mask_m, other=0.0)
r = tl.load(p1 + offs_m, mask=mask_m, other=1.0)
lgamma_r = tl.load(p1 + M + offs_m, mask=mask_m, other=0.0)
"""
        + triton_lgamma("lgamma_xr", "xf + r[:, None]")
        + "\nlp = lgamma_xr - lgamma_r[:, None] - log_fact + r[:, None] * ("
        + LOG_SIGMOID.format(s="logit[:, None]")
        + ") + xf * ("
        + LOG_SIGMOID.format(s="-logit[:, None]")
        + ")"
    )
    triton_doc = "p0 = logit of p [M], p1 = [r [M], lgamma(r) [M]]"

    def triton_tensors(self, p, part):
        r = p["log_r"].exp()
        return p["logit"], torch.cat([r, torch.lgamma(r)]).contiguous()
