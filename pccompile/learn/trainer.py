"""Training loop shared by the API and `pcc train`: mini-batch EM, full-batch EM, SGD or Adam,
with per-epoch checkpoints that resume exactly (same shuffles, same parameters, same optimiser
state) after an interruption."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Annotated

import numpy as np
import torch

from pccompile.io import check_state, module_state, read, save
from pccompile.ir import ArgumentError, DataError, FormatError
from pccompile.ir.limits import MAX_EPOCHS
from pccompile.ir.options import NonNegative, Positive, Range, Seed, check_fields

from .em import SCHEDULES, step_size_at
from .regularize import Regularization, Strength
from .strategies import STRATEGIES, FullBatchEM

# the command-line flag of each setting, as errors name it
_FLAGS = {"epochs": "--epochs", "batch_size": "--batch-size", "seed": "--seed", "pseudocount": "--pseudocount"}
_FLAGS |= {"finish_epochs": "--finish", "soften": "--soften", "entropy": "--entropy-reg"}
_FLAGS |= {"step_size": "--step-size", "step_size_end": "--step-size-end"}


@dataclass
class TrainConfig:
    epochs: Annotated[int, Range(1, MAX_EPOCHS)] = 10
    batch_size: Positive = 512
    optimizer: str = "em"
    step_size: NonNegative | None = None  # EM step size (em: 0.1, em-full: 1.0) or learning rate (sgd/adam)
    step_size_end: NonNegative | None = None  # final step size for a decaying schedule
    schedule: str = "constant"  # constant | linear | cosine | three-phase (pccompile.learn.em.SCHEDULES)
    pseudocount: NonNegative = 0.1
    seed: Seed = 0
    phase_epochs: Annotated[int, Range(1, MAX_EPOCHS)] | None = (
        None  # epochs of each model's step-size schedule (None: the rest of the run)
    )
    finish_epochs: Annotated[int, Range(0, MAX_EPOCHS)] = (
        0  # full-batch EM epochs (step 1) after the `epochs` ones: the released codes' last phase
    )
    soften: Strength = 0.0  # data softening beta (learn.regularize): EM on soft evidence of the training data
    entropy: Strength = 0.0  # entropy regularisation tau (learn.regularize) of every EM M-step
    # the step sizes a phase passes through, in linear stretches of equal length (replaces
    # step_size, step_size_end and schedule): the released codes' 0.3, 0.1, 0.01, 0.001
    step_knots: tuple[NonNegative, ...] | None = None
    drop_last: bool = False  # skip each epoch's last, incomplete mini-batch (the released codes do)

    def __post_init__(self):
        if self.optimizer not in STRATEGIES:
            raise ArgumentError(f"unknown optimizer '{self.optimizer}'; expected {', '.join(STRATEGIES)}")
        if self.schedule not in SCHEDULES:
            raise ArgumentError(f"unknown schedule '{self.schedule}'; expected {', '.join(SCHEDULES)}")
        check_fields(self, lambda name: _FLAGS.get(name, name))
        if self.step_knots is not None:
            if len(self.step_knots) < 2:
                raise ArgumentError(f"--step-size knots need at least two values, got {self.step_knots}")
            self.step_size, self.step_size_end = self.step_knots[0], self.step_knots[-1]
            if self.optimizer.startswith("em") and max(self.step_knots) > 1:
                raise ArgumentError(f"--step-size knots must lie in [0, 1] for EM, got {self.step_knots}")
        if (self.soften or self.entropy) and not self.optimizer.startswith("em"):
            raise ArgumentError(
                f"--soften and --entropy-reg are EM regularisers; optimizer {self.optimizer} takes neither"
            )
        if self.step_size is None:
            self.step_size = STRATEGIES[self.optimizer].default_step
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
        ok = (
            isinstance(r, dict)
            and sorted(r) == sorted(names)
            and isinstance(r["epoch"], int)
            and all(r[n] is None or isinstance(r[n], (int, float)) for n in names)
            and r["train_ll"] is not None
        )
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
def mean_log_likelihood(model, x, batch_size: int = 1024, group=None) -> float:
    """Mean log-likelihood over the rows of x (refuses an empty x: its mean is undefined, not 0).
    `group` (learn.distributed): each rank scores its shard of the rows, the sums are all-reduced."""
    if len(x) == 0:
        raise DataError("there are no rows to evaluate")
    if batch_size < 1:
        raise ArgumentError(f"batch size must be at least 1, got {batch_size}")
    n, rows = len(x), x
    if group is not None:
        rows = x[group.shard(n)]
    total = torch.zeros(1, dtype=torch.float64, device=model.device)  # NCCL reduces device tensors
    for i in range(0, len(rows), batch_size):
        total += model(rows[i : i + batch_size]).double().sum()
    if group is not None:
        group.sum_([total])
    return float(total) / max(n, 1)


@dataclass
class Trainer:
    """The training loop. `between_epochs(trainer, record)` runs after every epoch and may return
    a new model (a pruned or grown one): the trainer then trains that model, with a fresh
    strategy (optimiser state) for it and a new phase of the step-size schedule, and the next
    checkpoint holds it. The schedule runs per phase: `config.phase_epochs` epochs each (or the
    rest of the run)."""

    model: torch.nn.Module
    config: TrainConfig
    train: np.ndarray
    valid: np.ndarray | None = None
    test: np.ndarray | None = None
    checkpoint: Path | None = None
    on_batch: Callable[[int, int], None] | None = None
    on_epoch: Callable[[EpochRecord], None] | None = None
    between_epochs: Callable[["Trainer", EpochRecord], torch.nn.Module | None] | None = None
    history: list[EpochRecord] = field(default_factory=list)
    start_epoch: int = 0
    phase_start: int = 0
    stopped: bool = False  # set by a between-epochs hook to end the run after this epoch
    finish_from: int | None = None  # the epoch the finishing phase began at, when a hook moved it earlier
    group: object | None = None  # learn.distributed.Group: data-parallel, this rank's shard of every batch

    def __post_init__(self):
        for name in ("train", "valid", "test"):
            x = getattr(self, name)
            if x is not None and len(x) == 0:
                raise DataError(f"the {name} data has no rows")
        cfg = self.config
        self.reg = Regularization.from_data(cfg.soften, cfg.entropy, self.train, self.model.program.var_cats)
        self.strategy = self._strategy(STRATEGIES[cfg.optimizer])

    def _strategy(self, kind):
        return kind(self.model, self.config.pseudocount, self.reg, self.group)

    @property
    def optimizer(self):
        """The torch optimiser of a gradient strategy (None for EM)."""
        return getattr(self.strategy, "optimizer", None)

    # -- checkpoints ------------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        if self.checkpoint is None or (self.group is not None and not self.group.is_main):
            return
        groups, arrays = self.strategy.state()
        state = {
            "stopped": self.stopped,
            "epoch": len(self.history),
            "config": asdict(self.config),
            "phase_start": self.phase_start,
            "finish_from": self.finish_from,
            "history": [asdict(r) for r in self.history],
            "param_groups": groups,
        }
        save(self.model, self.checkpoint, extra={"train_state": state}, extra_arrays=arrays)

    def restore(self) -> None:
        """Continue from `checkpoint`: parameters, optimiser state, history, epoch and phase. A
        checkpoint that does not fit this run (another circuit, a damaged training record) is a
        FormatError."""
        record, arrays = read(self.checkpoint)
        state = record["extra"].get("train_state")
        where = f"checkpoint '{self.checkpoint}'"
        if not isinstance(state, dict):
            raise FormatError(f"{where} holds no training state")
        module = module_state(arrays)
        check_state(self.checkpoint, self.model.state_dict(), module)
        history = _history(state.get("history"), where)
        epoch, phase = state.get("epoch"), state.get("phase_start", 0)
        finish_from = state.get("finish_from")
        if finish_from is not None and not (_count(finish_from) and finish_from <= min(epoch or 0, self.config.epochs)):
            raise FormatError(f"{where}: finishing start {finish_from!r} does not fit epoch {epoch!r}")
        self.finish_from = finish_from
        if not _count(epoch) or not 0 <= epoch <= self.total_epochs or epoch != len(history):
            raise FormatError(
                f"{where}: epoch {epoch!r} does not fit its history of {len(history)} epochs "
                f"and this run of {self.total_epochs}"
            )
        if not _count(phase) or phase > epoch:
            raise FormatError(f"{where}: phase start {phase!r} does not fit epoch {epoch}")
        self.model.load_state_dict(module)
        try:
            self.strategy.load(state.get("param_groups"), arrays)
        except (ValueError, KeyError, TypeError, IndexError, RuntimeError) as e:
            raise FormatError(f"{where}: the optimiser state does not fit this model ({e})") from None
        self.history, self.start_epoch, self.phase_start = history, epoch, phase
        self.stopped = state.get("stopped") is True
        if self.stopped:  # the run had ended: nothing is left to train
            self.start_epoch = self.total_epochs

    # -- the loop -------------------------------------------------------------------------------
    def _encode_train(self):
        """The training set encoded once, on the model's device (validated chunk by chunk), so
        a step only gathers its rows: no per-batch host-to-device copy or validation."""
        chunk = 65536
        parts = [self.model.encode(self.train[i : i + chunk]) for i in range(0, len(self.train), chunk)]
        x_int = torch.cat([p[0] for p in parts])
        x_real = None if parts[0][1] is None else torch.cat([p[1] for p in parts])
        return x_int, x_real

    def _progress(self, epoch: int, batch: int, batches: int) -> float:
        """Where in its phase's schedule a step is, from 0 (first step) to 1 (last)."""
        length = self.config.phase_epochs or (self.config.epochs - self.phase_start)
        return ((epoch - self.phase_start) * batches + batch) / max(length * batches - 1, 1)

    def _batches(self, n: int, finishing: bool) -> list[tuple[int, int]]:
        """(start, end) of each mini-batch of the shuffled rows; with `drop_last` the last one is
        skipped when incomplete (not in full-batch finishing epochs, which see every row)."""
        size = self.config.batch_size
        batches = [(i, min(i + size, n)) for i in range(0, n, size)]
        full = finishing or isinstance(self.strategy, FullBatchEM)
        if self.config.drop_last and not full and len(batches) > 1 and batches[-1][1] - batches[-1][0] < size:
            batches.pop()
        return batches

    def run_epoch(self, epoch: int, encoded) -> EpochRecord:
        """One pass over the shuffled training set, then the epoch's record."""
        cfg, (x_int, x_real) = self.config, encoded
        n = len(self.train)
        finishing = self.finishing(epoch)
        batches = self._batches(n, finishing)
        t0 = time.perf_counter()
        perm = torch.as_tensor(np.random.default_rng([cfg.seed, epoch]).permutation(n), device=x_int.device)
        ll_sum = torch.zeros((), dtype=torch.float64, device=x_int.device)
        step = cfg.step_size
        for bi, (a, b) in enumerate(batches):
            idx = perm[a:b] if self.group is None else perm[a:b][self.group.shard(b - a)]
            progress = self._progress(epoch, bi, len(batches))
            step = (
                1.0
                if finishing
                else step_size_at(cfg.schedule, cfg.step_size, cfg.step_size_end, progress, cfg.step_knots)
            )
            ll_sum = ll_sum + self.strategy.step(x_int[idx], None if x_real is None else x_real[idx], step)
            if self.on_batch:
                self.on_batch(bi + 1, len(batches))
        self.strategy.end_epoch(step)
        if self.group is not None:
            ll_sum = ll_sum.reshape(1)
            self.group.sum_([ll_sum])
        return EpochRecord(
            epoch + 1,
            float(ll_sum.sum()) / batches[-1][1],  # the mean over the rows the epoch trained on
            None if self.valid is None else mean_log_likelihood(self.model, self.valid, group=self.group),
            None if self.test is None else mean_log_likelihood(self.model, self.test, group=self.group),
            time.perf_counter() - t0,
            step,
        )

    def swap_model(self, model: torch.nn.Module, next_epoch: int) -> None:
        """Train `model` from `next_epoch` on: a fresh strategy, a new schedule phase."""
        self.model = model
        self.strategy = self._strategy(STRATEGIES[self.config.optimizer])
        self.phase_start = next_epoch

    @property
    def total_epochs(self) -> int:
        start = self.config.epochs if self.finish_from is None else self.finish_from
        return start + self.config.finish_epochs

    def finishing(self, epoch: int) -> bool:
        """Epoch `epoch` (0-based) belongs to the full-batch finishing phase."""
        return epoch >= (self.config.epochs if self.finish_from is None else self.finish_from)

    def finish_early(self, epoch: int) -> bool:
        """Start the finishing phase at `epoch` (0-based: after `epoch` finished epochs), cutting
        the mini-batch phase short. False when there is no finishing phase or it has begun."""
        if not self.config.finish_epochs or self.finishing(epoch):
            return False
        self.finish_from = epoch
        return True

    def run(self) -> list[EpochRecord]:
        if self.group is not None:  # before any collective: ranks that disagree would hang or abort in one
            splits = {"train": self.train, "valid": self.valid, "test": self.test}
            self.group.check_same_data(splits, self.model, asdict(self.config))
        encoded = self._encode_train()
        epoch = self.start_epoch
        while epoch < self.total_epochs:  # total_epochs shrinks when a hook finishes early
            if self.finishing(epoch) and not isinstance(self.strategy, FullBatchEM):  # finishing phase
                self.strategy = self._strategy(FullBatchEM)
            rec = self.run_epoch(epoch, encoded)
            self.history.append(rec)
            new = self.between_epochs(self, rec) if self.between_epochs else None
            if new is not None and new is not self.model:
                self.swap_model(new, epoch + 1)
                encoded = self._encode_train()
            if self.group is not None:
                self.group.check_in_sync(self.model.state_dict().values(), f"after epoch {rec.epoch}")
            self.save_checkpoint()
            if self.on_epoch:
                self.on_epoch(rec)
            if self.stopped:
                break
            epoch += 1
        return self.history


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
