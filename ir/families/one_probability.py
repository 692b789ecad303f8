"""Families with one probability `p` per node (Bernoulli, binomial, geometric): IR `p [n]`,
drawn from U(0.2, 0.8); in the module `logit [m]` of p."""

from __future__ import annotations

from .declared import DeclaredParams, Param


class OneProbability(DeclaredParams):
    declared = (Param("p", kind="probability", draw=(0.2, 0.8)),)
