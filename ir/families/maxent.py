"""The entropy-regularised M-step on a probability simplex (Liu & Van den Broeck, "Tractable
Regularization of Probabilistic Circuits", NeurIPS 2021):

    theta* = argmax_theta  sum_i a_i log theta_i + b H(theta),   sum_i theta_i = 1,

with a_i the expected counts (flows plus the pseudocount share) and b >= 0 the weight of the
node's entropy. At the optimum a_i / theta_i - b log theta_i = lam for all i, with lam set by
sum theta = 1. Per entry, l = log theta solves a e^-l - b l = lam (convex and decreasing in l,
so Newton's iterates approach the root from one side after the first step); per row, lam takes
Newton steps on log sum_i theta_i(lam) = 0 (d theta_i / d lam = -theta_i^2 / (a_i + b theta_i)). All
rows of a layer are solved at once; b = 0 is plain EM, theta = a / sum(a). (The paper's code
takes Newton steps on l and projects onto the simplex in between; this converges to the same
optimum, to float precision, in fewer steps.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .lazy import torch

if TYPE_CHECKING:
    from torch import Tensor

RowSum = Callable[["Tensor"], "Tensor"]
"""Sum of a flat tensor's entries over each row, broadcast back to the entries."""

OUTER_STEPS = 6
INNER_STEPS = 3  # 5 x 2 already reach 1e-12 on rows of 2..64 entries with b up to sum(a)


def row_sum_last(t: Tensor) -> Tensor:
    """Row sums over the last axis of a [rows, k] tensor."""
    return t.sum(-1, keepdim=True).expand_as(t)


def segment_rows(segment: Tensor, rows: int) -> RowSum:
    """Row sums for entries grouped by `segment` ids."""

    def row_sum(t):
        return torch.zeros(rows, dtype=t.dtype, device=t.device).index_add_(0, segment, t)[segment]

    return row_sum


def entropic_probs(a: Tensor, b: Tensor, row_sum: RowSum) -> Tensor:
    """theta* for counts a > 0 and entropy weights b >= 0 (one value per entry, equal within a
    row), in float64 whatever the inputs' dtype."""
    a, b = a.double().clamp_min(1e-300), b.double().expand_as(a)
    theta = a / row_sum(a)
    log_t = theta.log()
    lam = row_sum(a) - b * row_sum(theta * log_t)  # sum(a) + b H(theta) at the plain-EM start
    for _ in range(OUTER_STEPS):
        for _ in range(INNER_STEPS):
            p = a * torch.exp(-log_t)
            log_t = log_t + (p - b * log_t - lam) / (p + b)
        theta = log_t.exp()
        total = row_sum(theta)
        lam = lam + total.log() * total / row_sum(theta * theta / (a + b * theta))  # Newton on log sum = 0
    return theta / row_sum(theta)
