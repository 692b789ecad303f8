"""Input families on the torch backend: log-probabilities, modes and samples of a partition,
from its unconstrained parameters (pccompile.params). One object per family in TORCH_INPUTS;
everything outside reads them by the partition's family name, and a new family is one entry.

Missing values (x = -1 for discrete variables, NaN for real ones) give log-probability 0, which
marginalises the variable; `observed` handles that for every family alike.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pccompile.ir import DISTRIBUTIONS, InputPartition
from pccompile.ir.distributions import LOG_MIN_STD


class TorchInput:
    """A family's maths on [m, B] values (missing entries already replaced by 0)."""

    def log_probs(self, part: InputPartition, p: dict, xv: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover - interface

    def log_table(self, part: InputPartition, p: dict) -> torch.Tensor | None:
        """[m, K] log-probability of every value, for a family over K values (None otherwise):
        then a batch's log-probabilities are one gather (see partition_log_probs)."""
        return None

    def mode(self, part: InputPartition, p: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """([m] most probable value, [m] its log-probability; for densities, at the mean)."""
        raise NotImplementedError  # pragma: no cover - interface

    def sample(self, part: InputPartition, p: dict, rows: torch.Tensor, gen) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover - interface


class _Categorical(TorchInput):
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


class _Bernoulli(TorchInput):
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


class _Binomial(TorchInput):
    """Successes of n = K - 1 trials: log C(n, x) + x log p + (n - x) log(1 - p)."""

    @staticmethod
    def _lp(n: int, logit: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
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


class _Gaussian(TorchInput):
    """Every evaluation floors the std at the documented MIN_STD (ir.distributions)."""

    def log_probs(self, part, p, xv):
        log_std = p["log_std"].clamp_min(LOG_MIN_STD).unsqueeze(1)
        z = (xv - p["mean"].unsqueeze(1)) * torch.exp(-log_std)
        return -0.5 * z * z - log_std - 0.5 * math.log(2 * math.pi)

    def mode(self, part, p):
        return p["mean"], -p["log_std"].clamp_min(LOG_MIN_STD) - 0.5 * math.log(2 * math.pi)

    def sample(self, part, p, rows, gen):
        noise = torch.randn(rows.shape, generator=gen, device=rows.device, dtype=p["mean"].dtype)
        return p["mean"][rows] + p["log_std"][rows].clamp_min(LOG_MIN_STD).exp() * noise


TORCH_INPUTS: dict[str, TorchInput] = {
    "categorical": _Categorical(),
    "bernoulli": _Bernoulli(),
    "binomial": _Binomial(),
    "gaussian": _Gaussian(),
}


def observed(part: InputPartition, vars_t: torch.Tensor, x_int: torch.Tensor, x_real: torch.Tensor | None):
    """([m, B] values of the partition's variables with missing entries set to 0, [m, B] missing)."""
    if DISTRIBUTIONS[part.dist].is_real:
        xv = x_real[:, vars_t].T
        miss = torch.isnan(xv)
        return torch.where(miss, torch.zeros_like(xv), xv), miss
    xv = x_int[:, vars_t].T
    miss = xv < 0
    return xv.clamp(min=0), miss


def variable_codes(part: InputPartition, vars_t: torch.Tensor, x_int: torch.Tensor) -> torch.Tensor:
    """[V, B] the value of each run's variable (rows in runs of `part.run_length`), a missing
    value coded as K = part.num_cats: one past the family's values."""
    xv = x_int[:, vars_t[:: part.run_length]].T
    return torch.where(xv < 0, part.num_cats, xv)


def partition_log_probs(
    part: InputPartition,
    params: dict[str, torch.Tensor],
    vars_t: torch.Tensor,
    x_int: torch.Tensor,
    x_real: torch.Tensor | None,
    table: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """[m, B] log-probabilities of one input partition (written into `out` [m, B] when given:
    the executor passes its buffer's rows, so no copy is made). Families over K values with rows in
    runs of L per variable (an HCLT's layout) take one gather from their [V, L, K + 1] table,
    whose extra column (log 1 = 0) is what a missing value reads: no [m, B] index or mask is
    built. Others evaluate per entry and zero the missing ones. A given `table` [m, K] of
    log-values replaces the family's own (softened evidence, pccompile.learn.regularize)."""
    if table is not None and part.run_length is None:
        xv, miss = observed(part, vars_t, x_int, x_real)
        lp = table.gather(1, xv)
        return torch.where(miss, torch.zeros_like(lp), lp)
    if table is None and part.run_length is not None:
        table = TORCH_INPUTS[part.dist].log_table(part, params)
    if table is not None:
        L, K = part.run_length, table.shape[1]
        table = torch.cat([table, table.new_zeros(table.shape[0], 1)], 1).reshape(-1, L, K + 1)
        codes = variable_codes(part, vars_t, x_int)
        index = codes.unsqueeze(1).expand(-1, L, -1)
        if out is not None:
            return torch.gather(table, 2, index, out=out.view(index.shape)).view(out.shape)
        return table.gather(2, index).reshape(-1, codes.shape[1])
    xv, miss = observed(part, vars_t, x_int, x_real)
    lp = TORCH_INPUTS[part.dist].log_probs(part, params, xv)
    if out is not None:
        return torch.where(miss, torch.zeros_like(lp), lp, out=out)
    return torch.where(miss, torch.zeros_like(lp), lp)


def partition_stats(part: InputPartition, params: dict[str, torch.Tensor]):
    """Per-row mode value and its log-probability: ([m] mode, [m] log p(mode))."""
    return TORCH_INPUTS[part.dist].mode(part, params)


def partition_sample(
    part: InputPartition, params: dict[str, torch.Tensor], rows: torch.Tensor, gen: torch.Generator | None
) -> torch.Tensor:
    """One draw from each selected row's distribution ([n] rows of this partition)."""
    return TORCH_INPUTS[part.dist].sample(part, params, rows, gen)
