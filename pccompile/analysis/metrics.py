"""Figures of merit shared by the CLI, the plots and the benchmarks."""

from __future__ import annotations

import math


def bits_per_dim(mean_log_likelihood: float, num_vars: int) -> float:
    """-LL / (V ln 2): the mean log-likelihood (nats per row) in bits per variable."""
    return -mean_log_likelihood / (num_vars * math.log(2))
