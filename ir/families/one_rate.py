"""Families with one rate > 0 per node (exponential, Poisson): IR `rate [n]`; in the module
`log_rate [m]`."""

from __future__ import annotations

from .declared import DeclaredParams, Param


class OneRate(DeclaredParams):
    declared = (Param("rate", draw=(0.5, 2.0)),)

    def triton_tensors(self, p, part):
        return p["log_rate"], p["log_rate"]
