"""Binomial: successes in `trials` trials of probability p, on a categorical(trials + 1)
variable (values 0..trials)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..distributions import Domain
from ..errors import StructureError
from ..limits import MAX_CATEGORIES
from .base import LOG_SIGMOID, mix, observed_flows
from .lazy import F, torch
from .one_probability import OneProbability
from .registry import register


@register
@dataclass(frozen=True)
class Binomial(OneProbability):
    """log p(x) = log C(n, x) + x log p + (n - x) log(1 - p), n = K - 1 trials."""

    trials: int = 1
    name = "binomial"

    @property
    def num_cats(self) -> int:  # type: ignore[override]  # derived from trials, not a field here
        return self.trials + 1

    def describe(self) -> str:
        return f"binomial({self.trials})"

    @classmethod
    def for_domain(cls, domain: Domain) -> "Binomial":
        return cls(max((domain.num_cats or 0) - 1, 0))

    def nx_values(self, params, row):
        return [float(self.trials), float(np.asarray(params["p"])[row])]

    @classmethod
    def from_nx(cls, node, values):
        if values.size != 2 or values[0] != int(values[0]) or not 1 <= values[0] < MAX_CATEGORIES:
            raise StructureError(
                node,
                f"binomial params are [trials, p] with 1 <= trials < {MAX_CATEGORIES:,}, got {values.tolist()[:8]}",
            )
        return cls(int(values[0])), {"p": values[1:].astype(np.float32)}

    @staticmethod
    def _lp(n: int, logit, x):
        xf = x.to(logit.dtype)
        log_c = torch.lgamma(torch.full_like(xf, n + 1.0)) - torch.lgamma(xf + 1) - torch.lgamma(n - xf + 1)
        return log_c + xf * F.logsigmoid(logit) + (n - xf) * F.logsigmoid(-logit)

    def log_probs(self, part, p, xv):
        return self._lp(part.num_cats - 1, p["logit"].unsqueeze(1), xv)

    def log_table(self, part, p):
        values = torch.arange(part.num_cats, device=p["logit"].device).unsqueeze(0)
        return self._lp(part.num_cats - 1, p["logit"].unsqueeze(1), values)

    def mode(self, part, p):
        n = part.num_cats - 1
        k = torch.floor((n + 1) * torch.sigmoid(p["logit"])).clamp(0, n).long()
        return k, self._lp(n, p["logit"], k)

    def sample(self, part, p, rows, gen):
        prob = torch.sigmoid(p["logit"][rows])
        count = torch.full_like(prob, float(part.num_cats - 1))
        return torch.binomial(count, prob, generator=gen).long()

    def stats(self, part, p, vars_t, f, x_int, x_real):
        """Successes S = sum f x and the flows W (the flow of missing values counts at p)."""
        xv, fo = observed_flows(part, vars_t, f, x_int, x_real)
        return {"w": fo.sum(1), "wx": (fo * xv.to(f.dtype)).sum(1), "missing": (f - fo).sum(1)}

    def m_step(self, part, h, s, a, pc, dtype, entropy=None):
        """p <- (1 - a) p + a (S + pc / 2) / (T + pc), T = n (W + missing flow)."""
        n = float(part.num_cats - 1)
        p = torch.sigmoid(h.logit)
        w, wx, miss = (s[k].to(dtype) for k in ("w", "wx", "missing"))
        succ, trials = wx + miss * n * p, n * (w + miss)
        new = torch.where(trials + pc > 0, (succ + pc / 2) / (trials + pc).clamp_min(1e-300), p)
        q = mix(p, new, a).clamp(1e-12, 1 - 1e-12)
        h.logit.copy_(q.log() - (1 - q).log())

    triton_snippet = (
        """\
logit = tl.load(p0 + offs_m, mask=mask_m, other=0.0)
xf = xc.to(tl.float32)
lp = tl.load(p1 + xc, mask=mask, other=0.0) + xf * ("""
        + LOG_SIGMOID.format(s="logit[:, None]")
        + """) \\
    + (K - 1 - xf) * ("""
        + LOG_SIGMOID.format(s="-logit[:, None]")
        + ")"
    )
    triton_doc = "p0 = logit [M], p1 = log C(K - 1, k) for k < K"

    def triton_tensors(self, p, part):
        n = part.num_cats - 1
        log_c = [math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) for k in range(n + 1)]
        return p["logit"], torch.tensor(log_c).to(p["logit"])
