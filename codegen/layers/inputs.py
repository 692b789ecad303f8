"""Input layers on the torch backend: log-probabilities, modes and samples of a partition,
from its unconstrained parameters, by its family's parts (pccompile.ir.families).

Missing values (x = -1 for discrete variables, NaN for real ones) give log-probability 0, which
marginalises the variable; `observed` handles that for every family alike.
"""

from __future__ import annotations

import torch
from pccompile.ir import InputPartition, family
from pccompile.ir.families import observed, variable_codes


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
        table = family(part.dist).log_table(part, params)
    if table is not None:
        L, K = part.run_length, table.shape[1]
        table = torch.cat([table, table.new_zeros(table.shape[0], 1)], 1).reshape(-1, L, K + 1)
        codes = variable_codes(part, vars_t, x_int)
        index = codes.unsqueeze(1).expand(-1, L, -1)
        if out is not None:
            return torch.gather(table, 2, index, out=out.view(index.shape)).view(out.shape)
        return table.gather(2, index).reshape(-1, codes.shape[1])
    xv, miss = observed(part, vars_t, x_int, x_real)
    lp = family(part.dist).log_probs(part, params, xv)
    if out is not None:
        return torch.where(miss, torch.zeros_like(lp), lp, out=out)
    return torch.where(miss, torch.zeros_like(lp), lp)


def partition_stats(part: InputPartition, params: dict[str, torch.Tensor]):
    """Per-row mode value and its log-probability: ([m] mode, [m] log p(mode))."""
    return family(part.dist).mode(part, params)


def partition_sample(
    part: InputPartition, params: dict[str, torch.Tensor], rows: torch.Tensor, gen: torch.Generator | None
) -> torch.Tensor:
    """One draw from each selected row's distribution ([n] rows of this partition)."""
    return family(part.dist).sample(part, params, rows, gen)
