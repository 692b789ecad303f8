"""Input distribution kinds and variable domains.

A distribution spec is structure only (which family, how many categories); its parameters live
in the circuit's parameter table so passes can rewrite them like any other parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .errors import ParameterError, StructureError
from .limits import MAX_CATEGORIES, check_limit


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


class Distribution:
    """An input family, IR side: which variables it fits, its parameters (names, shapes, random
    draws, validity), and its external forms (the DSL call, the networkx `params` list). The
    runtime and kernel sides are registered by `name` in the layers that own them
    (pccompile.params, pccompile.statistics, the torch backend's inputs, the Triton backend)."""

    name: ClassVar[str] = ""
    param_names: ClassVar[tuple[str, ...]] = ()
    is_real: ClassVar[bool] = False  # reads real values (x_real), not categories (x_int)
    num_cats: int | None = None

    def fits(self, domain: Domain) -> bool:
        return domain.num_cats == self.num_cats

    def domain(self) -> Domain:
        return Domain(self.num_cats)

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

    def check_params(self, node: str, params: dict[str, np.ndarray], n: int) -> None:
        raise NotImplementedError  # pragma: no cover - interface

    def nx_values(self, params: dict[str, np.ndarray], row: int) -> list[float]:
        """One node's parameters as the networkx `params` list."""
        return [float(v) for k in self.param_names for v in np.asarray(params[k])[row].reshape(-1)]

    @classmethod
    def from_nx(cls, node: str, values: np.ndarray) -> tuple["Distribution", dict[str, np.ndarray]]:
        raise NotImplementedError  # pragma: no cover - interface


CATEGORICAL_INIT_SPREAD = 8.0
"""Random categorical inputs get logits -k U(0, 1) with this k. Probabilities drawn near uniform
(U(0.6, 1.4), the sums' init) leave a circuit's latent states nearly interchangeable, and EM sat
on a plateau for epochs 2-6 of the digits demo; see docs/decisions.md for the measurement."""


@dataclass(frozen=True)
class Categorical(Distribution):
    num_cats: int = 2
    name = "categorical"
    param_names = ("probs",)

    def describe(self) -> str:
        return f"categorical({self.num_cats})"

    @classmethod
    def for_domain(cls, domain: Domain) -> "Categorical":
        return cls(domain.num_cats or 0)

    def param_shapes(self, n: int) -> dict[str, tuple[int, ...]]:
        return {"probs": (n, self.num_cats)}

    def random_params(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        logits = -CATEGORICAL_INIT_SPREAD * rng.random((n, self.num_cats))
        p = np.exp(logits - logits.max(1, keepdims=True))
        return {"probs": (p / p.sum(1, keepdims=True)).astype(np.float32)}

    def check_params(self, node: str, params: dict[str, np.ndarray], n: int) -> None:
        probs = _require(node, params, "probs", (n, self.num_cats))
        _check_simplex(node, "probs", probs)

    @classmethod
    def from_nx(cls, node, values):
        if values.size < 2:
            raise StructureError(node, "categorical params need at least 2 probabilities")
        check_limit(f"node '{node}' has categories:", values.size, MAX_CATEGORIES)
        return cls(int(values.size)), {"probs": values.reshape(1, -1).astype(np.float32)}


class _OneProbability(Distribution):
    """Families with one probability `p` per node (Bernoulli, Binomial): shapes, draws, checks."""

    param_names = ("p",)

    def param_shapes(self, n: int) -> dict[str, tuple[int, ...]]:
        return {"p": (n,)}

    def random_params(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {"p": rng.uniform(0.2, 0.8, size=n).astype(np.float32)}

    def check_params(self, node: str, params: dict[str, np.ndarray], n: int) -> None:
        p = _require(node, params, "p", (n,))
        if not np.all(np.isfinite(p)) or np.any(p < 0) or np.any(p > 1):
            raise ParameterError(node, f"{self.name} p must lie in [0, 1], got {p.tolist()[:8]}")


@dataclass(frozen=True)
class Bernoulli(_OneProbability):
    num_cats: int = 2
    name = "bernoulli"

    @classmethod
    def from_nx(cls, node, values):
        if values.size != 1:
            raise StructureError(node, f"bernoulli params are [p], got {values.tolist()[:8]}")
        return cls(), {"p": values.astype(np.float32)}


@dataclass(frozen=True)
class Binomial(_OneProbability):
    """Successes in `trials` trials of probability p: a variable of categorical(trials + 1)
    (values 0..trials)."""

    trials: int = 1
    name = "binomial"

    @property
    def num_cats(self) -> int:
        return self.trials + 1

    def describe(self) -> str:
        return f"binomial({self.trials})"

    @classmethod
    def for_domain(cls, domain: Domain) -> "Binomial":
        return cls(max((domain.num_cats or 0) - 1, 0))

    def nx_values(self, params, row):
        return [float(self.trials), float(np.asarray(params["p"])[row])]

    @classmethod
    def from_nx(cls, node, values):
        if values.size != 2 or values[0] != int(values[0]) or not 1 <= values[0] < MAX_CATEGORIES:
            raise StructureError(
                node,
                f"binomial params are [trials, p] with 1 <= trials < {MAX_CATEGORIES:,}, got {values.tolist()[:8]}",
            )
        return cls(int(values[0])), {"p": values[1:].astype(np.float32)}


MIN_STD = 1e-6
LOG_MIN_STD = float(np.log(MIN_STD))


@dataclass(frozen=True)
class Gaussian(Distribution):
    """A normal density. Every evaluation floors the standard deviation at MIN_STD (1e-6): any
    std > 0 is valid, and a smaller one (1e-40, or a log-std that gradient steps drove towards
    -inf) is evaluated as MIN_STD, so that no valid parameters give NaN or an infinite density."""

    name = "gaussian"
    param_names = ("mean", "std")
    is_real = True

    def param_shapes(self, n: int) -> dict[str, tuple[int, ...]]:
        return {"mean": (n,), "std": (n,)}

    def random_params(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {"mean": rng.normal(0.0, 1.0, size=n).astype(np.float32), "std": np.ones(n, dtype=np.float32)}

    def check_params(self, node: str, params: dict[str, np.ndarray], n: int) -> None:
        mean = _require(node, params, "mean", (n,))
        std = _require(node, params, "std", (n,))
        if not np.all(np.isfinite(mean)):
            raise ParameterError(node, "gaussian mean must be finite")
        if not np.all(np.isfinite(std)) or np.any(std <= 0):
            raise ParameterError(node, f"gaussian std must be finite and > 0, got {std.tolist()[:8]}")

    @classmethod
    def from_nx(cls, node, values):
        if values.size != 2:
            raise StructureError(node, f"gaussian params are [mean, std], got {values.tolist()[:8]}")
        return cls(), {"mean": values[:1].astype(np.float32), "std": values[1:].astype(np.float32)}


DISTRIBUTIONS: dict[str, type[Distribution]] = {d.name: d for d in (Categorical, Bernoulli, Binomial, Gaussian)}


def make_distribution(name: str, num_cats: int | None) -> Distribution:
    """The family `name` over a variable with `num_cats` categories (None: real)."""
    return DISTRIBUTIONS[name].for_domain(Domain(num_cats))


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
