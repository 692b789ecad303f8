"""One strategy object per optimiser: how a batch updates the model, and what state it keeps.

The trainer owns the loop (epochs, shuffles, the step-size schedule, checkpoints); a strategy
owns one step. A new optimiser is a new Strategy subclass registered in STRATEGIES, and the
trainer needs no change. When the trainer swaps its model (a pruned or grown one), it makes a
fresh strategy for the new model, so optimiser state never points at old parameters.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from .em import e_step, em_step, em_update
from .regularize import Regularization


class Strategy:
    """The interface: `step` one encoded batch (returns its summed log-likelihood as a device
    scalar), `end_epoch` after the last batch, and `state` / `load` for checkpoints (JSON-able
    record, named arrays)."""

    name: ClassVar[str] = ""
    default_step: ClassVar[float] = 0.1

    def __init__(self, model, pseudocount: float, reg: Regularization | None = None, group=None):
        """`group` (learn.distributed.Group): this rank steps on its shard of each batch, and
        what the ranks computed is summed before every update."""
        self.model, self.pseudocount, self.reg, self.group = model, pseudocount, reg, group

    @property
    def reduce(self):
        return None if self.group is None else self.group.reduce_stats

    def step(self, x_int: torch.Tensor, x_real: torch.Tensor | None, step_size: float) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover - interface

    def end_epoch(self, step_size: float) -> None:
        """Called once after an epoch's batches (full-batch EM updates here)."""

    def state(self) -> tuple[dict | None, dict[str, np.ndarray]]:
        return None, {}

    def load(self, record: dict | None, arrays: dict[str, np.ndarray]) -> None:
        """Restore what `state` saved (nothing for the EM strategies)."""


class MiniBatchEM(Strategy):
    """Mini-batch EM: flows of each batch, then an M-step with the scheduled step size."""

    name = "em"
    default_step = 0.1

    def step(self, x_int, x_real, step_size):
        return em_step(self.model, x_int, x_real, step_size, self.pseudocount, reduce=self.reduce, reg=self.reg)


class FullBatchEM(Strategy):
    """Full-batch EM: flows summed over the epoch, one M-step at its end."""

    name = "em-full"
    default_step = 1.0

    def __init__(self, model, pseudocount: float, reg: Regularization | None = None, group=None):
        super().__init__(model, pseudocount, reg, group)
        self.total = None

    def step(self, x_int, x_real, step_size):
        stats = e_step(self.model, x_int, x_real, self.reg)
        self.total = stats if self.total is None else self.total.add_(stats)
        return stats.log_likelihood

    def end_epoch(self, step_size):
        if self.total is not None:
            total = self.total if self.group is None else self.group.reduce_stats(self.total)
            em_update(self.model, total, step_size, self.pseudocount, self.reg)
        self.total = None


class Gradient(Strategy):
    """Gradient ascent on the mean log-likelihood with a torch optimiser (`optimizer_class`);
    its state (moments, step counts) is checkpointed as `optim.<param>.<name>` arrays."""

    optimizer_class: ClassVar[type] = torch.optim.SGD

    def __init__(self, model, pseudocount: float, reg: Regularization | None = None, group=None):
        super().__init__(model, pseudocount, reg, group)
        self.optimizer = self.optimizer_class(model.parameters(), lr=self.default_step)

    def step(self, x_int, x_real, step_size):
        for g in self.optimizer.param_groups:
            g["lr"] = step_size
        self.optimizer.zero_grad()
        lls = self.model.log_prob_encoded(x_int, x_real)
        if self.group is None:
            (-lls.mean()).backward()
        else:  # the global batch's mean: summed here, divided by all ranks' rows after the all-reduce
            (-lls.sum()).backward()
            self.group.reduce_grads(self.model.parameters(), lls.shape[0])
        self.optimizer.step()
        return lls.detach().double().sum()

    def state(self):
        sd = self.optimizer.state_dict()
        arrays = {
            f"optim.{idx}.{k}": torch.as_tensor(v).detach().cpu().contiguous().numpy()
            for idx, st in sd["state"].items()
            for k, v in st.items()
        }
        return sd["param_groups"], arrays

    def load(self, record, arrays):
        if record is None:
            return
        opt_state: dict[int, dict] = {}
        for k, v in arrays.items():
            if k.startswith("optim."):
                _, idx, name = (k.split(".", 2) + ["", ""])[:3]
                if not idx.isdigit() or not name:
                    raise ValueError(f"tensor '{k}' names no optimiser state")
                opt_state.setdefault(int(idx), {})[name] = torch.from_numpy(np.array(v))
        self.optimizer.load_state_dict({"state": opt_state, "param_groups": record})


class SGD(Gradient):
    name = "sgd"
    default_step = 0.05
    optimizer_class = torch.optim.SGD


class Adam(Gradient):
    """Adam on the logits. Its steps move each logit by about the learning rate, and a logit is a
    log-probability: 0.01 needs thousands of steps to move a weight by a factor of e^3, so 10
    epochs of nltcs ended at test LL -6.405 (cirkit's Adam: -6.243). 0.1 was chosen on validation
    data (nltcs and plants, bench/README.md "Gradient training")."""

    name = "adam"
    default_step = 0.1
    optimizer_class = torch.optim.Adam


STRATEGIES: dict[str, type[Strategy]] = {s.name: s for s in (MiniBatchEM, FullBatchEM, SGD, Adam)}
