"""Categorical: one probability per value of a categorical(K) variable."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..distributions import Domain, check_simplex, log_array, require
from ..errors import StructureError
from ..limits import MAX_CATEGORIES, check_limit
from .counts import CountsFamily
from .lazy import F, torch
from .registry import register

CATEGORICAL_INIT_SPREAD = 8.0
"""Random categorical inputs get logits -k U(0, 1) with this k. Probabilities drawn near uniform
(U(0.6, 1.4), the sums' init) leave a circuit's latent states nearly interchangeable, and EM sat
on a plateau for epochs 2-6 of the digits demo; see docs/decisions.md for the measurement."""


@register
@dataclass(frozen=True)
class Categorical(CountsFamily):
    """IR `probs [n, K]`; in the module `logits [m, K]` (log-probabilities up to a constant)."""

    num_cats: int = 2
    name = "categorical"
    param_names = ("probs",)

    def describe(self) -> str:
        return f"categorical({self.num_cats})"

    @classmethod
    def for_domain(cls, domain: Domain) -> "Categorical":
        return cls(domain.num_cats or 0)

    def param_shapes(self, n):
        return {"probs": (n, self.num_cats)}

    def random_params(self, n, rng):
        logits = -CATEGORICAL_INIT_SPREAD * rng.random((n, self.num_cats))
        p = np.exp(logits - logits.max(1, keepdims=True))
        return {"probs": (p / p.sum(1, keepdims=True)).astype(np.float32)}

    def check_params(self, node, params, n):
        check_simplex(node, "probs", require(node, params, "probs", (n, self.num_cats)))

    @classmethod
    def from_nx(cls, node, values):
        if values.size < 2:
            raise StructureError(node, "categorical params need at least 2 probabilities")
        check_limit(f"node '{node}' has categories:", values.size, MAX_CATEGORIES)
        return cls(int(values.size)), {"probs": values.reshape(1, -1).astype(np.float32)}

    # -- the module's tensors --------------------------------------------------------------
    def runtime_empty(self, part, dtype):
        return {"logits": np.zeros((part.size, part.num_cats), dtype=dtype)}

    def runtime_from_ir(self, p, dst, sl, dtype):
        dst["logits"][sl] = log_array(p["probs"], dtype)

    def runtime_to_ir(self, src, sl):
        lg = src["logits"][sl].astype(np.float64)
        pr = np.exp(lg - lg.max(1, keepdims=True))
        return {"probs": (pr / pr.sum(1, keepdims=True)).astype(np.float32)}

    def runtime_draw(self, h, sl, gen):
        h.logits[sl].uniform_(0.0, 1.0, generator=gen).mul_(-CATEGORICAL_INIT_SPREAD)

    # -- inference ---------------------------------------------------------------------------
    def log_probs(self, part, p, xv):
        return self.log_table(part, p).gather(1, xv)

    def log_table(self, part, p):
        return F.log_softmax(p["logits"], dim=1)

    def mode(self, part, p):
        best, arg = F.log_softmax(p["logits"], dim=1).max(1)
        return arg, best

    def sample(self, part, p, rows, gen):
        logp = F.log_softmax(p["logits"][rows], dim=1)
        u = torch.rand(logp.shape, generator=gen, device=rows.device, dtype=logp.dtype).clamp_min(1e-30)
        return (logp - (-u.log()).log()).argmax(1)  # Gumbel-max

    # -- learning ----------------------------------------------------------------------------
    def probs(self, h):
        return torch.softmax(h.logits, dim=1)

    def store(self, h, theta):
        h.logits.copy_(theta.log())

    # -- Triton ------------------------------------------------------------------------------
    triton_snippet = """\
lse = tl.load(p1 + offs_m, mask=mask_m, other=0.0)
lp = tl.load(p0 + offs_m[:, None] * K + xc, mask=mask, other=0.0) - lse[:, None]"""
    triton_doc = "p0 = logits [M, K], p1 = their log-sum-exp per row"

    def triton_tensors(self, p, part):
        return p["logits"], torch.logsumexp(p["logits"], 1)
