"""Closed-form integrals of products of input vectors, which the integral of a squared circuit
is made of: for two vectors f [N] and g [M] over one variable, log of the integral of f_i g_j
([N, M]), the same up to a threshold t (the CDF sampling inverts, [B, N, M]), and log of the
integral of f_i up to t ([B, N]).

They read an input node's runtime tensors (the families' own: categorical logits, Bernoulli
logit, Gaussian mean and log-std, sliced from the SignedProgram's partitions), so there is one
set of parameters. One rule per family in a table keyed by the IR family's class; a family
without one is refused by name. Inputs stay normalised densities (positive): the signs live in
the sums."""

from __future__ import annotations

import math

import torch

from pccompile.ir import InputNode, StructureError
from pccompile.ir.distributions import LOG_MIN_STD
from pccompile.ir.families.bernoulli import Bernoulli
from pccompile.ir.families.categorical import Categorical
from pccompile.ir.families.gaussian import Gaussian


class TableRule:
    """Families over K values: the integral of a product is a sum over the values."""

    @staticmethod
    def log_gram(node_a: InputNode, pa: dict, node_b: InputNode, pb: dict) -> torch.Tensor:
        la, lb = node_a.dist.log_table(None, pa), node_b.dist.log_table(None, pb)  # one variable: one K
        return torch.logsumexp(la[:, None, :] + lb[None, :, :], 2)


class GaussianRule:
    """N(x; m1, s1) N(x; m2, s2) = N(m1; m2, s1^2 + s2^2) N(x; m, s), m = (m1 s2^2 + m2 s1^2) /
    (s1^2 + s2^2), s^2 = s1^2 s2^2 / (s1^2 + s2^2)."""

    @staticmethod
    def _std(p: dict) -> tuple[torch.Tensor, torch.Tensor]:
        log_std = p["log_std"].clamp_min(LOG_MIN_STD)  # as the family evaluates it
        return p["mean"], log_std

    @classmethod
    def log_gram(cls, node_a, pa: dict, node_b, pb: dict) -> torch.Tensor:
        (m1, l1), (m2, l2) = cls._std(pa), cls._std(pb)
        var = (2 * l1).exp()[:, None] + (2 * l2).exp()[None, :]
        d = m1[:, None] - m2[None, :]
        return -0.5 * d * d / var - 0.5 * torch.log(2 * math.pi * var)

    @classmethod
    def log_gram_below(cls, node_a, pa: dict, node_b, pb: dict, t: torch.Tensor) -> torch.Tensor:
        (m1, l1), (m2, l2) = cls._std(pa), cls._std(pb)
        v1, v2 = (2 * l1).exp()[:, None], (2 * l2).exp()[None, :]
        mean = (m1[:, None] * v2 + m2[None, :] * v1) / (v1 + v2)
        std = (v1 * v2 / (v1 + v2)).sqrt()
        z = (t[:, None, None] - mean[None]) / std[None]
        return cls.log_gram(node_a, pa, node_b, pb)[None] + torch.special.log_ndtr(z)

    @classmethod
    def log_cdf(cls, p: dict, t: torch.Tensor) -> torch.Tensor:
        mean, log_std = cls._std(p)
        return torch.special.log_ndtr((t[:, None] - mean[None, :]) / log_std.exp()[None, :])

    @classmethod
    def bracket(cls, p: dict) -> tuple[float, float]:
        """An interval outside which every row has negligible mass."""
        mean, log_std = cls._std(p)
        spread = 40 * float(log_std.detach().exp().max())
        return float(mean.detach().min()) - spread, float(mean.detach().max()) + spread


RULES: dict[type, type] = {Bernoulli: TableRule, Categorical: TableRule, Gaussian: GaussianRule}
"""IR family class -> its closed-form integrals."""


def rule_for(node: InputNode):
    rule = RULES.get(type(node.dist))
    if rule is None:
        known = ", ".join(sorted(k.__name__.lower() for k in RULES))
        raise StructureError(
            node.name,
            f"a signed circuit's inputs need the integral of a product in closed form; "
            f"{node.dist.describe()} has none here (supported: {known})",
        )
    return rule
