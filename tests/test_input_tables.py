"""Input log-probabilities on the torch backend, both paths (one gather from the per-variable
table for HCLT-like layouts, per entry otherwise), against formulas written out here, with
missing values."""

import math

import numpy as np
import pytest
import torch
from pccompile.codegen.layers.inputs import partition_log_probs
from pccompile.ir import InputPartition


def _expected(dist: str, p: dict, K: int, value: int) -> float:
    if dist == "categorical":
        logits = p["logits"].astype(np.float64)
        return float(logits[value] - np.log(np.exp(logits).sum()))
    prob = 1 / (1 + math.exp(-float(p["logit"])))
    if dist == "bernoulli":
        return math.log(prob if value == 1 else 1 - prob)
    n = K - 1  # binomial
    log_c = math.lgamma(n + 1) - math.lgamma(value + 1) - math.lgamma(n - value + 1)
    return log_c + value * math.log(prob) + (n - value) * math.log(1 - prob)


@pytest.mark.parametrize("dist,K", [("categorical", 5), ("bernoulli", 2), ("binomial", 4)])
@pytest.mark.parametrize("layout", ["runs", "shuffled", "scattered"])  # one gather; per entry; per entry
def test_input_log_probs_match_the_formulas_with_missing_values(rng, dist, K, layout):
    V, L, B = 4, 3, 7
    vars_ = {
        "runs": np.repeat(np.arange(V), L),
        "shuffled": np.roll(np.repeat(np.arange(V), L), 1),  # L rows per variable, not in runs
        "scattered": np.array([0, 0, 0, 0, 1, 2, 2, 3, 3, 1, 0, 3]),  # unequal rows per variable
    }[layout]
    part = InputPartition(dist, K, 2, vars_)
    assert (part.run_length == L) == (layout == "runs")
    m = part.size
    if dist == "categorical":
        params = {"logits": torch.tensor(rng.normal(size=(m, K)))}
    else:
        params = {"logit": torch.tensor(rng.normal(size=m))}
    x = rng.integers(0, K, size=(B, V))
    x[rng.random((B, V)) < 0.3] = -1
    got = partition_log_probs(part, params, torch.as_tensor(vars_), torch.as_tensor(x), None).numpy()
    assert got.shape == (m, B)
    for r in range(m):
        row = {k: v[r].numpy() for k, v in params.items()}
        for b in range(B):
            value = x[b, vars_[r]]
            want = 0.0 if value < 0 else _expected(dist, row, K, int(value))
            assert got[r, b] == pytest.approx(want, abs=1e-9), (r, b, value)


@pytest.mark.parametrize("shuffled", [False, True])
def test_gradients_flow_through_the_table_gather(rng, shuffled):
    V, L, K, B = 3, 2, 4, 5
    vars_ = np.repeat(np.arange(V), L)
    part = InputPartition("categorical", K, 2, rng.permutation(vars_) if shuffled else vars_)
    logits = torch.tensor(rng.normal(size=(V * L, K)), requires_grad=True)
    x = torch.as_tensor(rng.integers(-1, K, size=(B, V)))
    partition_log_probs(part, {"logits": logits}, torch.as_tensor(part.vars), x, None).sum().backward()
    # d/dlogits of sum_b log softmax(logits)[x_b]: counts minus (observed count) * softmax
    soft = torch.softmax(logits.detach(), 1).numpy()
    for r in range(V * L):
        seen = x[:, part.vars[r]].numpy()
        counts = np.bincount(seen[seen >= 0], minlength=K)
        np.testing.assert_allclose(logits.grad[r].numpy(), counts - counts.sum() * soft[r], atol=1e-9)
