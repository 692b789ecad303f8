"""Training loop shared by the API and `pcc train`: mini-batch EM, full-batch EM, SGD or Adam,
with per-epoch checkpoints that resume exactly (same shuffles, same parameters, same optimiser
state) after an interruption."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from pccompile.flows import encoded_flows
from pccompile.ir import ArgumentError, DataError, FormatError
from pccompile.io import check_state, module_state, read, save

from .em import em_step, em_update, step_size_at

OPTIMIZERS = ("em", "em-full", "sgd", "adam")


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 512
    optimizer: str = "em"
    step_size: float | None = None  # EM step size (em: 0.1, em-full: 1.0) or learning rate (sgd/adam)
    step_size_end: float | None = None  # final step size for a decaying schedule
    schedule: str = "constant"  # constant | linear | cosine
    pseudocount: float = 0.1
    seed: int = 0

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ArgumentError(f"unknown optimizer '{self.optimizer}'; expected {', '.join(OPTIMIZERS)}")
        if self.schedule not in ("constant", "linear", "cosine"):
            raise ArgumentError(f"unknown schedule '{self.schedule}'; expected constant, linear or cosine")
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ArgumentError(f"{name.replace('_', ' ')} must be an integer of at least 1, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ArgumentError(f"seed must be an integer >= 0, got {self.seed!r}")
        if not _finite(self.pseudocount) or self.pseudocount < 0:
            raise ArgumentError(f"pseudocount must be a finite number >= 0, got {self.pseudocount!r}")
        if self.step_size is None:
            self.step_size = {"em": 0.1, "em-full": 1.0, "sgd": 0.05, "adam": 0.01}[self.optimizer]
        if self.step_size_end is None:
            self.step_size_end = self.step_size if self.schedule == "constant" else self.step_size * 0.1
        em = self.optimizer.startswith("em")
        for name, low_ok in (("step_size", False), ("step_size_end", True)):
            value = getattr(self, name)
            bad = not _finite(value) or value < 0 or (value == 0 and not low_ok) or (em and value > 1)
            if bad:
                want = "in (0, 1] (the EM step mixes old and new parameters)" if em else "finite and > 0"
                if low_ok:
                    want = want.replace("(0, 1]", "[0, 1]").replace("> 0", ">= 0")
                flag = "--" + name.replace("_", "-")
                raise ArgumentError(f"{flag} must be {want} for optimizer {self.optimizer}, got {value!r}")


def _history(rows, where: str) -> list[EpochRecord]:
    """The epoch records of a checkpoint, each field of the type EpochRecord declares."""
    names = [f.name for f in fields(EpochRecord)]
    if not isinstance(rows, list):
        raise FormatError(f"{where}: the training history is not a list")
    out = []
    for k, r in enumerate(rows):
        ok = isinstance(r, dict) and sorted(r) == sorted(names) and isinstance(r["epoch"], int) and all(
            r[n] is None or isinstance(r[n], (int, float)) for n in names) and r["train_ll"] is not None
        if not ok:
            raise FormatError(f"{where}: history entry {k} is not an epoch record with fields {', '.join(names)}")
        out.append(EpochRecord(**r))
    return out


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class EpochRecord:
    epoch: int
    train_ll: float
    valid_ll: float | None
    test_ll: float | None
    seconds: float
    step_size: float


@torch.no_grad()
def mean_log_likelihood(model, x, batch_size: int = 1024) -> float:
    """Mean log-likelihood over the rows of x (refuses an empty x: its mean is undefined, not 0)."""
    if len(x) == 0:
        raise DataError("there are no rows to evaluate")
    if batch_size < 1:
        raise ArgumentError(f"batch size must be at least 1, got {batch_size}")
    total = 0.0
    for i in range(0, len(x), batch_size):
        total += float(model(x[i:i + batch_size]).double().sum())
    return total / max(len(x), 1)


@dataclass
class Trainer:
    model: torch.nn.Module
    config: TrainConfig
    train: np.ndarray
    valid: np.ndarray | None = None
    test: np.ndarray | None = None
    checkpoint: Path | None = None
    on_batch: Callable[[int, int], None] | None = None
    on_epoch: Callable[[EpochRecord], None] | None = None
    history: list[EpochRecord] = field(default_factory=list)
    start_epoch: int = 0

    def __post_init__(self):
        for name in ("train", "valid", "test"):
            x = getattr(self, name)
            if x is not None and len(x) == 0:
                raise DataError(f"the {name} data has no rows")
        self.optimizer = None
        if self.config.optimizer in ("sgd", "adam"):
            cls = torch.optim.SGD if self.config.optimizer == "sgd" else torch.optim.Adam
            self.optimizer = cls(self.model.parameters(), lr=self.config.step_size)

    # -- checkpoints ------------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        if self.checkpoint is None:
            return
        arrays = {}
        groups = None
        if self.optimizer is not None:
            sd = self.optimizer.state_dict()
            for idx, st in sd["state"].items():
                for k, v in st.items():
                    arrays[f"optim.{idx}.{k}"] = torch.as_tensor(v).detach().cpu().contiguous().numpy()
            groups = sd["param_groups"]
        state = {"epoch": len(self.history), "config": asdict(self.config),
                 "history": [asdict(r) for r in self.history], "param_groups": groups}
        save(self.model, self.checkpoint, extra={"train_state": state}, extra_arrays=arrays)

    def restore(self) -> None:
        """Continue from `checkpoint`: parameters, optimiser state, history and epoch. A checkpoint
        that does not fit this run (another circuit, a damaged training record) is a FormatError."""
        record, arrays = read(self.checkpoint)
        state = record["extra"].get("train_state")
        where = f"checkpoint '{self.checkpoint}'"
        if not isinstance(state, dict):
            raise FormatError(f"{where} holds no training state")
        module = module_state(arrays)
        check_state(self.checkpoint, self.model.state_dict(), module)
        history = _history(state.get("history"), where)
        epoch = state.get("epoch")
        if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch <= self.config.epochs \
                or epoch != len(history):
            raise FormatError(f"{where}: epoch {epoch!r} does not fit its history of {len(history)} epochs "
                              f"and this run of {self.config.epochs}")
        self.model.load_state_dict(module)
        if self.optimizer is not None and state.get("param_groups") is not None:
            self._restore_optimizer(arrays, state["param_groups"], where)
        self.history = history
        self.start_epoch = epoch

    def _restore_optimizer(self, arrays, groups, where: str) -> None:
        opt_state: dict[int, dict] = {}
        for k, v in arrays.items():
            if k.startswith("optim."):
                _, idx, name = (k.split(".", 2) + ["", ""])[:3]
                if not idx.isdigit() or not name:
                    raise FormatError(f"{where}: tensor '{k}' names no optimiser state")
                opt_state.setdefault(int(idx), {})[name] = torch.from_numpy(np.array(v))
        try:
            self.optimizer.load_state_dict({"state": opt_state, "param_groups": groups})
        except (ValueError, KeyError, TypeError, IndexError, RuntimeError) as e:
            raise FormatError(f"{where}: the optimiser state does not fit this model ({e})") from None

    # -- the loop -------------------------------------------------------------------------------
    def _encode_train(self):
        """The training set encoded once, on the model's device (validated chunk by chunk), so
        a step only gathers its rows: no per-batch host-to-device copy or validation."""
        chunk = 65536
        parts = [self.model.encode(self.train[i:i + chunk]) for i in range(0, len(self.train), chunk)]
        x_int = torch.cat([p[0] for p in parts])
        x_real = None if parts[0][1] is None else torch.cat([p[1] for p in parts])
        return x_int, x_real

    def run(self) -> list[EpochRecord]:
        cfg = self.config
        n = len(self.train)
        batches = [(i, min(i + cfg.batch_size, n)) for i in range(0, n, cfg.batch_size)]
        total_steps = cfg.epochs * len(batches)
        x_int, x_real = self._encode_train()
        for epoch in range(self.start_epoch, cfg.epochs):
            t0 = time.perf_counter()
            perm = np.random.default_rng([cfg.seed, epoch]).permutation(n)
            perm_t = torch.as_tensor(perm, device=x_int.device)
            ll_sum, full = torch.zeros((), dtype=torch.float64, device=x_int.device), None
            step = cfg.step_size
            for bi, (a, b) in enumerate(batches):
                idx = perm_t[a:b]
                xi, xr = x_int[idx], None if x_real is None else x_real[idx]
                progress = (epoch * len(batches) + bi) / max(total_steps - 1, 1)
                step = step_size_at(cfg.schedule, cfg.step_size, cfg.step_size_end, progress)
                if cfg.optimizer == "em":
                    ll_sum = ll_sum + em_step(self.model, xi, xr, step, cfg.pseudocount)
                elif cfg.optimizer == "em-full":
                    stats = encoded_flows(self.model, xi, xr)
                    full = stats if full is None else full.add_(stats)
                    ll_sum = ll_sum + stats.log_likelihood
                else:
                    for g in self.optimizer.param_groups:
                        g["lr"] = step
                    self.optimizer.zero_grad()
                    lls = self.model.log_prob_encoded(xi, xr)
                    loss = -lls.mean()
                    loss.backward()
                    self.optimizer.step()
                    ll_sum = ll_sum + lls.detach().double().sum()
                if self.on_batch:
                    self.on_batch(bi + 1, len(batches))
            if full is not None:
                em_update(self.model, full, step, cfg.pseudocount)
            rec = EpochRecord(epoch + 1, float(ll_sum) / n,
                              None if self.valid is None else mean_log_likelihood(self.model, self.valid),
                              None if self.test is None else mean_log_likelihood(self.model, self.test),
                              time.perf_counter() - t0, step)
            self.history.append(rec)
            self.save_checkpoint()
            if self.on_epoch:
                self.on_epoch(rec)
            if os.environ.get("PCC_TEST_CRASH_AFTER_EPOCH") == str(epoch + 1):
                os._exit(75)  # test hook: die like a killed process, right after a checkpoint
        return self.history

