"""Geometric: failures before the first success, P(x) = p (1 - p)^x for x = 0, 1, 2, ..."""

from __future__ import annotations

from dataclasses import dataclass

from .base import LOG_SIGMOID, mix, observed_flows
from .counting import CountFamily
from .lazy import F, torch
from .one_probability import OneProbability
from .registry import register


@register
@dataclass(frozen=True)
class Geometric(OneProbability, CountFamily):
    """IR `p [n]` in (0, 1]; in the module `logit [m]` of p."""

    name = "geometric"

    def log_probs(self, part, p, xv):
        logit = p["logit"].unsqueeze(1)
        return F.logsigmoid(logit) + xv.to(logit.dtype) * F.logsigmoid(-logit)

    def mode(self, part, p):
        return torch.zeros_like(p["logit"], dtype=torch.long), F.logsigmoid(p["logit"])

    def sample(self, part, p, rows, gen):
        u = torch.rand(rows.shape, generator=gen, device=rows.device, dtype=p["logit"].dtype).clamp_min(1e-30)
        return torch.floor(u.log() / F.logsigmoid(-p["logit"][rows])).long()  # P(X >= k) = (1 - p)^k

    def stats(self, part, p, vars_t, f, x_int, x_real):
        xv, fo = observed_flows(part, vars_t, f, x_int, x_real)
        return {"w": fo.sum(1), "wx": (fo * xv.to(f.dtype)).sum(1), "missing": (f - fo).sum(1)}

    def m_step(self, part, h, s, a, pc, dtype, entropy=None):
        """p <- (W' + pc / 2) / (W' + S' + pc), where the missing flow adds W' = W + F_miss
        trials and S' = S + F_miss (1 - p) / p failures (their expectation at the current p)."""
        p = torch.sigmoid(h.logit)
        w, wx, miss = (s[k].to(p.dtype) for k in ("w", "wx", "missing"))
        trials, fails = w + miss, wx + miss * (1 - p) / p.clamp_min(1e-30)
        new = torch.where(trials + fails + pc > 0, (trials + pc / 2) / (trials + fails + pc).clamp_min(1e-300), p)
        q = mix(p, new, a).clamp(1e-12, 1 - 1e-12)
        h.logit.copy_(q.log() - (1 - q).log())

    triton_snippet = (
        """\
logit = tl.load(p0 + offs_m, mask=mask_m, other=0.0)
lp = ("""
        + LOG_SIGMOID.format(s="logit[:, None]")
        + ") + xc.to(tl.float32) * ("
        + LOG_SIGMOID.format(s="-logit[:, None]")
        + ")"
    )
    triton_doc = "p0 = logit [M]"

    def triton_tensors(self, p, part):
        return p["logit"], p["logit"]
