"""The EM regularisers of "Tractable Regularization of Probabilistic Circuits" (Liu & Van den
Broeck, NeurIPS 2021), the techniques behind its HCLT results:

- **Data softening** (`soften` = beta): each observed training value x of a discrete variable
  becomes soft evidence, weight w(v | x) = (1 - beta) [v = x] + beta m_v on every value v, with
  m the variable's value frequencies in the training data (the paper's code scales by the
  marginal so). An input's value on soft evidence is sum_v w(v | x) theta_v = (1 - beta)
  theta_x + beta <m, theta>, and its expected counts give value v the share theta_v w(v | x) /
  that value. Validation and test data are never softened.
- **Entropy regularisation** (`entropy` = tau): each M-step maximises, per sum node and per
  categorical input n, sum_c a_c log theta_c + b_n H(theta_n) with b_n = tau (N + pc) phi_n, where
  N is the batch's row count and phi_n the probability that a top-down pass through the circuit
  reaches n (its flow when every variable is missing). For a deterministic circuit this is the
  exact entropy of the distribution; for others, the paper's approximation (pccompile.ir.families.maxent
  solves each node's problem).

Both work through the executor's plain interface (input log-values in, flows out), so they run
on every backend; the fused EM kernel is bypassed while entropy is on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch

from pccompile.analysis.flows import FlowStats, encoded_flows
from pccompile.ir import ArgumentError, family
from pccompile.ir.options import Range, option_value

Strength = Annotated[float, Range(0, 1, open_hi=True)]  # of either regulariser


@dataclass(frozen=True, eq=False)
class Regularization:
    soften: Strength = 0.0
    entropy: Strength = 0.0
    marginals: np.ndarray | None = None  # [V, K] value frequencies of the training data (softening)

    def __post_init__(self):
        for name, flag in (("soften", "--soften"), ("entropy", "--entropy-reg")):
            option_value(getattr(self, name), Strength, flag)
        if self.soften > 0 and self.marginals is None:
            raise ArgumentError("softening needs the training data's value frequencies")

    @classmethod
    def from_data(cls, soften: float, entropy: float, train, num_cats) -> "Regularization | None":
        """The regularisers for a run on `train` [N, V] (None when both are off)."""
        if not soften and not entropy:
            return None
        return cls(soften, entropy, value_frequencies(train, num_cats) if soften else None)

    # -- the E-step on softened data ---------------------------------------------------------
    def e_step(self, model, x_int, x_real) -> FlowStats:
        if not self.soften:
            return encoded_flows(model, x_int, x_real)
        soft = self._soft_tables(model)
        tables = [None if t is None else t[2] for t in soft]
        stats = encoded_flows(model, x_int, x_real, model.input_log_probs(x_int, x_real, tables))
        for i, t in enumerate(soft):
            if t is not None:
                stats.inputs[i]["counts"] = self._soft_counts(*t, stats.inputs[i]["counts"])
        return stats

    def _soft_tables(self, model):
        """Per partition, for the softened families: (theta [m, K], each row's variable
        marginals m [m, K], log soft table [m, K]); None for the others."""
        out = []
        for part, h in zip(model.program.input_partitions, model.inputs):
            if not family(part.dist).softened or part.num_cats is None:
                out.append(None)
                continue
            theta = family(part.dist).probs(h)
            m = torch.as_tensor(self.marginals[:, : part.num_cats], dtype=theta.dtype, device=theta.device)[h.vars]
            s = (theta * m).sum(1, keepdim=True)
            out.append((theta, m, ((1 - self.soften) * theta + self.soften * s).log()))
        return out

    def _soft_counts(self, theta, m, table, counts):
        """Counts per observed value c_x -> expected counts per true value:
        c'_v = theta_v ((1 - beta) c_v / theta'_v + beta m_v sum_x c_x / theta'_x)."""
        ratio = counts / table.exp().to(counts.dtype)
        beta = self.soften
        return theta.to(counts.dtype) * ((1 - beta) * ratio + beta * m.to(counts.dtype) * ratio.sum(1, keepdim=True))

    # -- the entropy weights of the M-step ---------------------------------------------------
    def entropy_weights(self, model, rows: int, pseudocount: float):
        """(sum weights: [P] tau (N + pc) times each weight's flow in the reach pass, whose row
        sums are the rows' entropy weights b; inputs: [b [m] per row, or None per partition]),
        or None when entropy regularisation is off."""
        if not self.entropy:
            return None
        reach = encoded_flows(model, *missing_row(model))
        scale = self.entropy * (rows + pseudocount)
        inputs = [
            scale * s["missing"] if family(part.dist).softened else None
            for part, s in zip(model.program.input_partitions, reach.inputs)
        ]
        return scale * reach.sum_flows, inputs


def missing_row(model):
    """One encoded row with every variable missing: its flows are the top-down reach
    probabilities."""
    V = len(model.program.var_cats)
    return model.encode(np.zeros((1, V), np.float32), np.ones((1, V), bool))


def value_frequencies(train, num_cats) -> np.ndarray:
    """[V, K] frequency of each value of each discrete variable over its observed training
    entries (uniform for a variable never observed; zeros for real variables)."""
    x = np.asarray(train)
    cats = [0 if k is None else int(k) for k in num_cats]
    K = max(cats + [1])
    out = np.zeros((x.shape[1], K))
    for v, k in enumerate(cats):
        if k == 0:
            continue
        col = x[:, v]
        col = col[np.isfinite(col) & (col >= 0)].astype(np.int64) if col.dtype.kind == "f" else col[col >= 0]
        counts = np.bincount(col, minlength=k)[:k].astype(np.float64)
        out[v, :k] = counts / counts.sum() if counts.sum() > 0 else 1.0 / k
    return out
