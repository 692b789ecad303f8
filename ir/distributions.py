"""Input distribution kinds and variable domains.

A distribution spec is structure only (which family, how many categories); its parameters live
in the circuit's parameter table so passes can rewrite them like any other parameter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ParameterError


@dataclass(frozen=True)
class Domain:
    """What values a variable takes: `num_cats` categories (0..K-1), or reals when None."""

    num_cats: int | None

    @property
    def is_real(self) -> bool:
        return self.num_cats is None

    def describe(self) -> str:
        if self.num_cats is None:
            return "real"
        if self.num_cats == 2:
            return "binary"
        return f"categorical({self.num_cats})"


BINARY = Domain(2)
REAL = Domain(None)


def categorical_domain(k: int) -> Domain:
    return Domain(int(k))


@dataclass(frozen=True)
class Categorical:
    num_cats: int
    name = "categorical"
    param_names = ("probs",)

    def fits(self, domain: Domain) -> bool:
        return domain.num_cats == self.num_cats

    def domain(self) -> Domain:
        return Domain(self.num_cats)

    def param_shapes(self, n: int) -> dict[str, tuple[int, ...]]:
        return {"probs": (n, self.num_cats)}

    def random_params(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        p = rng.random((n, self.num_cats), dtype=np.float32) * np.float32(0.8) + np.float32(0.6)
        return {"probs": p / p.sum(1, keepdims=True)}

    def check_params(self, node: str, params: dict[str, np.ndarray], n: int) -> None:
        probs = _require(node, params, "probs", (n, self.num_cats))
        _check_simplex(node, "probs", probs)


@dataclass(frozen=True)
class Bernoulli:
    name = "bernoulli"
    param_names = ("p",)
    num_cats = 2

    def fits(self, domain: Domain) -> bool:
        return domain.num_cats == 2

    def domain(self) -> Domain:
        return BINARY

    def param_shapes(self, n: int) -> dict[str, tuple[int, ...]]:
        return {"p": (n,)}

    def random_params(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {"p": rng.uniform(0.2, 0.8, size=n).astype(np.float32)}

    def check_params(self, node: str, params: dict[str, np.ndarray], n: int) -> None:
        p = _require(node, params, "p", (n,))
        if not np.all(np.isfinite(p)) or np.any(p < 0) or np.any(p > 1):
            raise ParameterError(node, f"bernoulli p must lie in [0, 1], got {p.tolist()[:8]}")


MIN_STD = 1e-6
LOG_MIN_STD = float(np.log(MIN_STD))


@dataclass(frozen=True)
class Gaussian:
    """A normal density. Every evaluation floors the standard deviation at MIN_STD (1e-6): any
    std > 0 is valid, and a smaller one (1e-40, or a log-std that gradient steps drove towards
    -inf) is evaluated as MIN_STD, so that no valid parameters give NaN or an infinite density."""

    name = "gaussian"
    param_names = ("mean", "std")
    num_cats = None

    def fits(self, domain: Domain) -> bool:
        return domain.is_real

    def domain(self) -> Domain:
        return REAL

    def param_shapes(self, n: int) -> dict[str, tuple[int, ...]]:
        return {"mean": (n,), "std": (n,)}

    def random_params(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {"mean": rng.normal(0.0, 1.0, size=n).astype(np.float32),
                "std": np.ones(n, dtype=np.float32)}

    def check_params(self, node: str, params: dict[str, np.ndarray], n: int) -> None:
        mean = _require(node, params, "mean", (n,))
        std = _require(node, params, "std", (n,))
        if not np.all(np.isfinite(mean)):
            raise ParameterError(node, "gaussian mean must be finite")
        if not np.all(np.isfinite(std)) or np.any(std <= 0):
            raise ParameterError(node, f"gaussian std must be finite and > 0, got {std.tolist()[:8]}")


Distribution = Categorical | Bernoulli | Gaussian

DISTRIBUTIONS = {"categorical": Categorical, "bernoulli": Bernoulli, "gaussian": Gaussian}


def _require(node: str, params: dict[str, np.ndarray], key: str, shape: tuple[int, ...]) -> np.ndarray:
    if key not in params:
        raise ParameterError(node, f"missing parameter '{key}'")
    arr = np.asarray(params[key])
    if arr.shape != shape:
        raise ParameterError(node, f"parameter '{key}' has shape {arr.shape}, expected {shape}")
    return arr


def _check_simplex(node: str, key: str, probs: np.ndarray, atol: float = 1e-4) -> None:
    if not np.all(np.isfinite(probs)):
        raise ParameterError(node, f"'{key}' contains NaN or infinite values")
    if np.any(probs < 0):
        raise ParameterError(node, f"'{key}' contains negative values")
    sums = probs.sum(-1)
    bad = np.flatnonzero(np.abs(sums - 1) > atol)
    if bad.size:
        raise ParameterError(node, f"'{key}' row {int(bad[0])} sums to {float(sums[bad[0]]):.6g}, not 1")
