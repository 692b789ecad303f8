"""Input vectors of a signed circuit as torch modules: trainable parameters, log-densities at
the data, and the log Gram matrix of two vectors over one variable (log of the integral of
f_i g_j), which is what the integral of a squared circuit is made of.

One class per family, in a table keyed by the IR family's class, as the compiled backends keep
theirs; a family without a closed-form Gram (an integral of a product within the family) is
refused by name. Inputs stay normalised densities (positive); the signs live in the sums."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from pccompile.ir import InputNode, StructureError
from pccompile.ir.families.bernoulli import Bernoulli
from pccompile.ir.families.categorical import Categorical
from pccompile.ir.families.gaussian import Gaussian


class TableInput(nn.Module):
    """A vector of distributions over K values, as logits [N, K] (categorical; Bernoulli is K = 2)."""

    def __init__(self, node: InputNode, probs: np.ndarray, dtype: torch.dtype):
        super().__init__()
        self.node = node
        with np.errstate(divide="ignore"):
            logits = np.log(np.asarray(probs, np.float64))
        self.logits = nn.Parameter(torch.as_tensor(np.maximum(logits, -80.0), dtype=dtype))

    @property
    def num_values(self) -> int:
        return self.logits.shape[1]

    def log_table(self) -> torch.Tensor:
        return torch.log_softmax(self.logits, 1)

    def log_density(self, x: torch.Tensor) -> torch.Tensor:
        """x [B] (floats holding values; entries of missing rows are ignored) -> [B, N]."""
        k = x.nan_to_num(0.0).clamp(0, self.num_values - 1).long()
        return self.log_table().t()[k]

    def log_gram(self, other: TableInput) -> torch.Tensor:
        """[N, M]: log sum_v f_i(v) g_j(v)."""
        return torch.logsumexp(self.log_table()[:, None, :] + other.log_table()[None, :, :], 2)

    def ir_params(self) -> dict[str, np.ndarray]:
        return {"probs": self.log_table().exp().detach().cpu().numpy().astype(np.float32)}


class BernoulliInput(TableInput):
    def __init__(self, node: InputNode, params: dict, dtype: torch.dtype):
        p = np.asarray(params["p"], np.float64)
        super().__init__(node, np.stack([1 - p, p], 1), dtype)

    def ir_params(self) -> dict[str, np.ndarray]:
        return {"p": self.log_table()[:, 1].exp().detach().cpu().numpy().astype(np.float32)}


class CategoricalInput(TableInput):
    def __init__(self, node: InputNode, params: dict, dtype: torch.dtype):
        super().__init__(node, params["probs"], dtype)


class GaussianInput(nn.Module):
    """Means and log standard deviations [N]."""

    num_values = None  # a real variable

    def __init__(self, node: InputNode, params: dict, dtype: torch.dtype):
        super().__init__()
        self.node = node
        self.mean = nn.Parameter(torch.as_tensor(np.asarray(params["mean"], np.float64), dtype=dtype))
        self.log_std = nn.Parameter(torch.as_tensor(np.log(np.asarray(params["std"], np.float64)), dtype=dtype))

    def log_density(self, x: torch.Tensor) -> torch.Tensor:
        z = (x.nan_to_num(0.0)[:, None] - self.mean[None, :]) / self.log_std.exp()[None, :]
        return -0.5 * z * z - self.log_std[None, :] - 0.5 * math.log(2 * math.pi)

    def log_gram(self, other: GaussianInput) -> torch.Tensor:
        """log of the integral of N(x; m1, s1) N(x; m2, s2) = log N(m1; m2, s1^2 + s2^2)."""
        var = (2 * self.log_std).exp()[:, None] + (2 * other.log_std).exp()[None, :]
        d = self.mean[:, None] - other.mean[None, :]
        return -0.5 * d * d / var - 0.5 * torch.log(2 * math.pi * var)

    def log_cdf(self, t: torch.Tensor) -> torch.Tensor:
        """[B, N]: log of the integral of f_i from -inf to t [B]."""
        return torch.special.log_ndtr((t[:, None] - self.mean[None, :]) / self.log_std.exp()[None, :])

    def log_gram_below(self, other: GaussianInput, t: torch.Tensor) -> torch.Tensor:
        """[B, N, M]: log of the integral of f_i g_j from -inf to t [B]. The product is
        N(m1; m2, s1^2 + s2^2) times a Gaussian of mean (m1 s2^2 + m2 s1^2) / (s1^2 + s2^2)
        and variance s1^2 s2^2 / (s1^2 + s2^2)."""
        v1, v2 = (2 * self.log_std).exp()[:, None], (2 * other.log_std).exp()[None, :]
        mean = (self.mean[:, None] * v2 + other.mean[None, :] * v1) / (v1 + v2)
        std = (v1 * v2 / (v1 + v2)).sqrt()
        return self.log_gram(other)[None] + torch.special.log_ndtr((t[:, None, None] - mean[None]) / std[None])

    def ir_params(self) -> dict[str, np.ndarray]:
        return {
            "mean": self.mean.detach().cpu().numpy().astype(np.float32),
            "std": self.log_std.exp().detach().cpu().numpy().astype(np.float32),
        }


INPUTS: dict[type, type] = {Bernoulli: BernoulliInput, Categorical: CategoricalInput, Gaussian: GaussianInput}
"""IR family class -> its input module in a signed circuit."""


def input_module(node: InputNode, params: dict, dtype: torch.dtype) -> nn.Module:
    kind = INPUTS.get(type(node.dist))
    if kind is None:
        known = ", ".join(sorted(k.__name__.lower() for k in INPUTS))
        raise StructureError(
            node.name,
            f"a signed circuit's inputs need the integral of a product in closed form; "
            f"{node.dist.describe()} has none here (supported: {known})",
        )
    return kind(node, params, dtype)
