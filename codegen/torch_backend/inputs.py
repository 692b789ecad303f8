"""Log-probabilities of input partitions, from unconstrained parameters.

Parameters per partition: categorical `logits [m, K]`, bernoulli `logit [m]`, gaussian `mean [m]`
and `log_std [m]`. Missing values (x = -1 for discrete, NaN for real) give log-probability 0,
which marginalises the variable.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pccompile.ir import InputPartition
from pccompile.ir.distributions import LOG_MIN_STD


def partition_log_probs(part: InputPartition, params: dict[str, torch.Tensor], vars_t: torch.Tensor,
                        x_int: torch.Tensor, x_real: torch.Tensor | None) -> torch.Tensor:
    """[m, B] log-probabilities of one input partition."""
    if part.dist == "gaussian":
        xv = x_real[:, vars_t].T  # [m, B]
        miss = torch.isnan(xv)
        xv = torch.where(miss, torch.zeros_like(xv), xv)
        mean = params["mean"].unsqueeze(1)
        log_std = params["log_std"].clamp_min(LOG_MIN_STD).unsqueeze(1)
        z = (xv - mean) * torch.exp(-log_std)
        lp = -0.5 * z * z - log_std - 0.5 * math.log(2 * math.pi)
        return torch.where(miss, torch.zeros_like(lp), lp)
    xv = x_int[:, vars_t].T  # [m, B]
    miss = xv < 0
    xc = xv.clamp(min=0)
    if part.dist == "categorical":
        logp = F.log_softmax(params["logits"], dim=1)
        lp = logp.gather(1, xc)
    else:  # bernoulli
        logit = params["logit"].unsqueeze(1)
        lp = torch.where(xc == 1, F.logsigmoid(logit), F.logsigmoid(-logit))
    return torch.where(miss, torch.zeros_like(lp), lp)


def partition_stats(part: InputPartition, params: dict[str, torch.Tensor]):
    """Per-row mode value and its log-probability: ([m] mode, [m] log p(mode)). For Gaussians
    the 'log-probability' is the log-density at the mean."""
    if part.dist == "gaussian":
        return params["mean"], -params["log_std"].clamp_min(LOG_MIN_STD) - 0.5 * math.log(2 * math.pi)
    if part.dist == "categorical":
        logp = F.log_softmax(params["logits"], dim=1)
        best, arg = logp.max(1)
        return arg, best
    logit = params["logit"]
    return (logit > 0).long(), torch.maximum(F.logsigmoid(logit), F.logsigmoid(-logit))


def partition_sample(part: InputPartition, params: dict[str, torch.Tensor], rows: torch.Tensor,
                     gen: torch.Generator | None) -> torch.Tensor:
    """One draw from each selected row's distribution ([n] rows of this partition)."""
    if part.dist == "gaussian":
        noise = torch.randn(rows.shape, generator=gen, device=rows.device, dtype=params["mean"].dtype)
        return params["mean"][rows] + params["log_std"][rows].clamp_min(LOG_MIN_STD).exp() * noise
    if part.dist == "categorical":
        logp = F.log_softmax(params["logits"][rows], dim=1)
        u = torch.rand(logp.shape, generator=gen, device=rows.device, dtype=logp.dtype).clamp_min(1e-30)
        return (logp - (-u.log()).log()).argmax(1)  # Gumbel-max
    u = torch.rand(rows.shape, generator=gen, device=rows.device, dtype=params["logit"].dtype)
    return (u < torch.sigmoid(params["logit"][rows])).long()
