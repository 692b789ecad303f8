"""Input distribution kinds and variable domains.

A distribution spec is structure only (which family, how many categories); its parameters live
in the circuit's parameter table so passes can rewrite them like any other parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .errors import ParameterError


@dataclass(frozen=True)
class Domain:
    """What values a variable takes: `num_cats` categories (0..K-1); with None, reals, or the
    counts 0, 1, 2, ... without an upper bound when `count`."""

    num_cats: int | None
    count: bool = False

    @property
    def is_real(self) -> bool:
        return self.num_cats is None and not self.count

    def describe(self) -> str:
        if self.count:
            return "count"
        if self.num_cats is None:
            return "real"
        if self.num_cats == 2:
            return "binary"
        return f"categorical({self.num_cats})"


BINARY = Domain(2)
REAL = Domain(None)
COUNT = Domain(None, count=True)


class Distribution:
    """An input family, IR side: which variables it fits, its parameters (names, shapes, random
    draws, validity), and its external forms (the DSL call, the networkx `params` list). The
    families themselves, with their kernel parts, are the modules of `ir.families`."""

    name: ClassVar[str] = ""
    param_names: ClassVar[tuple[str, ...]] = ()
    is_real: ClassVar[bool] = False  # reads real values (x_real), not categories (x_int)
    is_count: ClassVar[bool] = False  # reads unbounded counts (x_int, no num_cats)
    num_cats: int | None = None

    def fits(self, domain: Domain) -> bool:
        return domain == self.domain()

    def domain(self) -> Domain:
        return Domain(self.num_cats, count=self.is_count)

    def describe(self) -> str:
        return self.name

    @classmethod
    def for_domain(cls, domain: Domain) -> "Distribution":
        """The family's instance for a variable of `domain` (the DSL's `bernoulli(x)` and the
        like); fits() tells whether it suits that domain."""
        return cls()

    def param_shapes(self, n: int) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError  # pragma: no cover - interface

    def random_params(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        raise NotImplementedError  # pragma: no cover - interface

    def check_params(self, node: str, params: Mapping[str, np.ndarray], n: int) -> None:
        raise NotImplementedError  # pragma: no cover - interface

    def nx_values(self, params: dict[str, np.ndarray], row: int) -> list[float]:
        """One node's parameters as the networkx `params` list."""
        return [float(v) for k in self.param_names for v in np.asarray(params[k])[row].reshape(-1)]

    @classmethod
    def from_nx(cls, node: str, values: np.ndarray) -> tuple["Distribution", dict[str, np.ndarray]]:
        raise NotImplementedError  # pragma: no cover - interface


MIN_STD = 1e-6
"""The floor of every evaluated standard deviation (Gaussian and the families on log scales)."""
LOG_MIN_STD = float(np.log(MIN_STD))


def log_array(a, dtype=np.float64) -> np.ndarray:
    """log of an array, -inf at zeros without a warning."""
    with np.errstate(divide="ignore"):
        return np.log(np.asarray(a, dtype=dtype))


def require(node: str, params: Mapping[str, np.ndarray], key: str, shape: tuple[int, ...]) -> np.ndarray:
    if key not in params:
        raise ParameterError(node, f"missing parameter '{key}'")
    arr = np.asarray(params[key])
    if arr.shape != shape:
        raise ParameterError(node, f"parameter '{key}' has shape {arr.shape}, expected {shape}")
    return arr


def check_simplex(node: str, key: str, probs: np.ndarray, atol: float = 1e-4) -> None:
    if not np.all(np.isfinite(probs)):
        raise ParameterError(node, f"'{key}' contains NaN or infinite values")
    if np.any(probs < 0):
        raise ParameterError(node, f"'{key}' contains negative values")
    sums = probs.sum(-1)
    bad = np.flatnonzero(np.abs(sums - 1) > atol)
    if bad.size:
        raise ParameterError(node, f"'{key}' row {int(bad[0])} sums to {float(sums[bad[0]]):.6g}, not 1")
