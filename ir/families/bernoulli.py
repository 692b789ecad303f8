"""Bernoulli: a binary variable with P(x = 1) = p."""

from __future__ import annotations

from dataclasses import dataclass

from .base import LOG_SIGMOID
from .counts import CountsFamily
from .lazy import F, torch
from .one_probability import OneProbability
from .registry import register


@register
@dataclass(frozen=True)
class Bernoulli(OneProbability, CountsFamily):
    num_cats: int = 2
    name = "bernoulli"

    def log_probs(self, part, p, xv):
        logit = p["logit"].unsqueeze(1)
        return torch.where(xv == 1, F.logsigmoid(logit), F.logsigmoid(-logit))

    def log_table(self, part, p):
        logit = p["logit"].unsqueeze(1)
        return torch.cat([F.logsigmoid(-logit), F.logsigmoid(logit)], 1)

    def mode(self, part, p):
        logit = p["logit"]
        return (logit > 0).long(), torch.maximum(F.logsigmoid(logit), F.logsigmoid(-logit))

    def sample(self, part, p, rows, gen):
        u = torch.rand(rows.shape, generator=gen, device=rows.device, dtype=p["logit"].dtype)
        return (u < torch.sigmoid(p["logit"][rows])).long()

    def probs(self, h):
        p1 = torch.sigmoid(h.logit)
        return torch.stack([1 - p1, p1], 1)

    def store(self, h, theta):
        h.logit.copy_(theta[:, 1].log() - theta[:, 0].log())

    triton_snippet = (
        """\
logit = tl.load(p0 + offs_m, mask=mask_m, other=0.0)
s = tl.where(xc == 1, logit[:, None], -logit[:, None])
lp = """
        + LOG_SIGMOID.format(s="s")
        + "  # log sigmoid(s)"
    )
    triton_doc = "p0 = logit [M]"

    def triton_tensors(self, p, part):
        return p["logit"], p["logit"]
