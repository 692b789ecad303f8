"""Maximum likelihood for signed circuits by gradient descent (EM does not apply: a squared
circuit is not a mixture of its sub-circuits). Adam on the mean negative log-likelihood,
log Z recomputed every step from the parameters; the best epoch on validation data is kept."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .circuit import SignedCircuit


@dataclass(frozen=True)
class Epoch:
    epoch: int
    train_ll: float  # mean over the epoch's batches, before each step
    valid_ll: float | None
    seconds: float


@torch.no_grad()
def mean_log_prob(model: SignedCircuit, x: torch.Tensor, batch_size: int = 4096) -> float:
    log_z = model.log_norm()
    total = 0.0
    for s in range(0, x.shape[0], batch_size):
        total += float(model.log_prob(x[s : s + batch_size], log_z).sum())
    return total / x.shape[0]


def fit(
    model: SignedCircuit,
    train: torch.Tensor,
    *,
    valid: torch.Tensor | None = None,
    epochs: int = 10,
    batch_size: int = 256,
    lr: float = 0.01,
    seed: int = 0,
    on_epoch: Callable[[Epoch], None] | None = None,
) -> list[Epoch]:
    """Train in place; returns one Epoch per epoch. With `valid`, the parameters of the best
    validation epoch are restored at the end."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    history: list[Epoch] = []
    best, best_state = -float("inf"), None
    for epoch in range(1, epochs + 1):
        t0, total, rows = time.perf_counter(), 0.0, 0
        for idx in torch.randperm(train.shape[0], generator=gen).split(batch_size):
            xb = train[idx]
            loss = -model.log_prob(xb).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, rows = total - float(loss.detach()) * len(idx), rows + len(idx)
        valid_ll = mean_log_prob(model, valid) if valid is not None else None
        if valid_ll is not None and valid_ll > best:
            best, best_state = valid_ll, copy.deepcopy(model.state_dict())
        history.append(Epoch(epoch, total / rows, valid_ll, time.perf_counter() - t0))
        if on_epoch is not None:
            on_epoch(history[-1])
    if best_state is not None:
        model.load_state_dict(best_state)
    return history
