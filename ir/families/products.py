"""Products of two input vectors of one family over one variable, in closed form where the
family is closed under products: p_a(x) p_b(x) = Z q(x), q of the same family.

For vectors of sizes N and M the product has N * M rows, row r * M + s the product of row r of
a and row s of b; each gives q's IR parameters and log Z per row. Numpy only (the IR's
parameters), for circuit multiplication (passes/multiply.py)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .bernoulli import Bernoulli
from .binomial import Binomial
from .categorical import Categorical
from .exponential import Exponential
from .gaussian import Gaussian


def _pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (row of a, row of b), a's row major: [N * M, ...] each."""
    n, m = a.shape[0], b.shape[0]
    return np.repeat(a, m, axis=0), np.tile(b, (n,) + (1,) * (b.ndim - 1))


def _table(pa: np.ndarray, pb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Probability tables [N, K] x [M, K]: q = pa pb / Z, Z = sum_k pa pb."""
    x, y = _pairs(np.asarray(pa, np.float64), np.asarray(pb, np.float64))
    joint = x * y
    z = joint.sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(z[:, None] > 0, joint / z[:, None], 1.0 / joint.shape[1])
        return q, np.log(z)


def _probability_table(dist, params: dict) -> np.ndarray | None:
    """[n, K] probabilities of each value, for the families over K values; None otherwise."""
    if isinstance(dist, Categorical):
        return np.asarray(params["probs"], np.float64)
    if isinstance(dist, Bernoulli):
        p = np.asarray(params["p"], np.float64)
        return np.stack([1 - p, p], 1)
    if isinstance(dist, Binomial):
        n, p = dist.trials, np.asarray(params["p"], np.float64)[:, None]
        k = np.arange(n + 1)[None, :]
        log_c = np.array([math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1) for j in range(n + 1)])
        with np.errstate(divide="ignore"):
            return np.exp(log_c[None, :] + k * np.log(p) + (n - k) * np.log1p(-p))
    return None


def _gaussian(a: dict, b: dict) -> tuple[dict, np.ndarray]:
    """N(x; m1, s1) N(x; m2, s2) = N(m1; m2, s1^2 + s2^2) N(x; m, s), the precisions adding."""
    m1, m2 = _pairs(np.asarray(a["mean"], np.float64), np.asarray(b["mean"], np.float64))
    v1, v2 = (v**2 for v in _pairs(np.asarray(a["std"], np.float64), np.asarray(b["std"], np.float64)))
    var = v1 * v2 / (v1 + v2)
    mean = (m1 * v2 + m2 * v1) / (v1 + v2)
    log_z = -0.5 * (m1 - m2) ** 2 / (v1 + v2) - 0.5 * np.log(2 * math.pi * (v1 + v2))
    return {"mean": mean.astype(np.float32), "std": np.sqrt(var).astype(np.float32)}, log_z


def _exponential(a: dict, b: dict) -> tuple[dict, np.ndarray]:
    """r1 e^(-r1 x) r2 e^(-r2 x) = (r1 r2 / (r1 + r2)) (r1 + r2) e^(-(r1 + r2) x)."""
    r1, r2 = _pairs(np.asarray(a["rate"], np.float64), np.asarray(b["rate"], np.float64))
    return {"rate": (r1 + r2).astype(np.float32)}, np.log(r1 * r2 / (r1 + r2))


PRODUCTS: dict[type, Callable[[dict, dict], tuple[dict, np.ndarray]]] = {
    Gaussian: _gaussian,
    Exponential: _exponential,
}
"""Family class -> the product of two of its vectors' IR parameters ((q's parameters, log Z)),
for the densities closed under products. The families over K values (categorical, Bernoulli,
binomial) multiply as tables, into a categorical (a Bernoulli when both are)."""


def input_product(family_a, family_b, a: dict, b: dict):
    """(q's family, q's parameters, log Z [N * M]) of two input vectors over one variable, or
    None where no closed form is known."""
    ta, tb = _probability_table(family_a, a), _probability_table(family_b, b)
    if ta is not None and tb is not None and ta.shape[1] == tb.shape[1]:
        q, log_z = _table(ta, tb)
        if isinstance(family_a, Bernoulli) and isinstance(family_b, Bernoulli):
            return family_a, {"p": q[:, 1].astype(np.float32)}, log_z
        return Categorical(q.shape[1]), {"probs": q.astype(np.float32)}, log_z
    if family_a != family_b or type(family_a) not in PRODUCTS:
        return None
    return (family_a, *PRODUCTS[type(family_a)](a, b))
