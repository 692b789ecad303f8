"""The prune-grow learner of "Sparse Probabilistic Circuits via Pruning and Growing": train the
dense circuit, then each round prune a fraction of its edges by flow on the training set, grow
every node vector back with noisy copies, and train again; keep the model with the best
validation log-likelihood over all rounds.

It runs inside the ordinary Trainer as a between-epochs hook: every `epochs` epochs ends a round,
so checkpoints, exact resume and the per-phase step-size schedule (one phase per round) come
from the trainer. The rounds' table rows go to `<out>.rounds.json`, the best model to
`<out>.best.pcz`, both rewritten atomically at each round's end.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

from pccompile.ir import ArgumentError


@dataclasses.dataclass(frozen=True)
class PruneGrowOptions:
    rounds: int = 5  # prune-grow rounds after the dense one
    fraction: float = 0.75  # of candidate edges pruned each round
    factor: int = 2  # growth of every node vector
    noise: float = 0.1  # sigma of the multiplicative weight noise
    epochs: int = 5  # EM epochs per round (the dense round included)

    def __post_init__(self):
        if self.rounds < 0 or self.epochs < 1 or self.factor < 1 or not 0 <= self.fraction <= 1 or self.noise < 0:
            raise ArgumentError(
                f"--prune-grow needs rounds >= 0, epochs >= 1, factor >= 1, fraction in [0, 1] and "
                f"noise >= 0; got {self}"
            )

    @classmethod
    def parse(cls, text: str) -> "PruneGrowOptions":
        """'rounds=3,fraction=0.75,factor=2,noise=0.1,epochs=5' (any subset)."""
        kinds = {f.name: f.type for f in dataclasses.fields(cls)}
        values = {}
        for item in filter(None, (t.strip() for t in text.split(","))):
            key, sep, value = item.partition("=")
            key = key.strip()
            if not sep or key not in kinds:
                raise ArgumentError(f"--prune-grow: unknown setting '{item}'; expected {', '.join(kinds)}")
            try:
                values[key] = int(value) if kinds[key] in (int, "int") else float(value)
            except ValueError:
                raise ArgumentError(f"--prune-grow: {key} expects a number, got '{value}'") from None
        return cls(**values)

    @property
    def total_epochs(self) -> int:
        return (self.rounds + 1) * self.epochs


class PruneGrow:
    """The between-epochs hook. `on_round(row)` sees each round's table row."""

    def __init__(self, options: PruneGrowOptions, train, out: Path, on_round=None, backend: str = "auto", device=None):
        self.opt, self.train, self.on_round = options, train, on_round
        self.backend, self.device = backend, device
        self.best_path = out.with_name(out.stem + ".best.pcz")
        self.rounds_path = out.with_name(out.stem + ".rounds.json")
        self.rows: list[dict] = []

    def restore(self, epoch: int) -> None:
        """After a resume: the round rows written up to `epoch`."""
        if self.rounds_path.exists():
            try:
                rows = json.loads(self.rounds_path.read_text())
            except (ValueError, OSError):
                rows = []
            self.rows = [r for r in rows if isinstance(r, dict) and r.get("epoch", math.inf) <= epoch]

    @property
    def best(self) -> dict | None:
        scored = [r for r in self.rows if r.get("valid_ll") is not None]
        return max(scored, key=lambda r: r["valid_ll"]) if scored else (self.rows[-1] if self.rows else None)

    def __call__(self, trainer, rec):
        if rec.epoch % self.opt.epochs:
            return None
        from pccompile.io import save

        round_ = rec.epoch // self.opt.epochs - 1  # 0: the dense circuit
        stats = trainer.model.circuit.stats()
        row = {
            "round": round_,
            "epoch": rec.epoch,
            "nodes": stats["nodes"],
            "edges": stats["sum edges"],
            "parameters": stats["parameters"],
            "train_ll": rec.train_ll,
            "valid_ll": rec.valid_ll,
            "test_ll": rec.test_ll,
            "seconds": sum(r.seconds for r in trainer.history[-self.opt.epochs :]),
        }
        best = self.best
        self.rows.append(row)
        if self._is_better(row, best):
            save(trainer.model, self.best_path, extra={"prune_grow_round": row})
        tmp = self.rounds_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.rows, indent=1))
        tmp.replace(self.rounds_path)
        if self.on_round:
            self.on_round(row)
        return self._next(trainer, round_)

    def _is_better(self, row: dict, best: dict | None) -> bool:
        return best is None or row["valid_ll"] is None or row["valid_ll"] > best["valid_ll"]

    def _next(self, trainer, round_: int):
        """The model of the next round: pruned by flow on the training set, then grown."""
        from pccompile import compile as _compile
        from pccompile.passes import Grow, Prune, run

        if round_ >= self.opt.rounds:
            return None
        passes = [Prune(fraction=self.opt.fraction), Grow(factor=self.opt.factor, noise=self.opt.noise, seed=round_)]
        circuit = run(trainer.model.to_circuit(), passes, data=self.train, device=self.device)
        return _compile(circuit, backend=self.backend, device=self.device)


@dataclasses.dataclass(frozen=True)
class CompressOptions:
    fraction: float = 0.1  # of the remaining candidate edges pruned each round
    tolerance: float = 0.01  # stop once validation LL is this much (relative) below round 0's
    epochs: int = 3  # fine-tuning epochs per round
    rounds: int = 30  # at most

    def __post_init__(self):
        if not 0 < self.fraction <= 1 or self.tolerance < 0 or self.epochs < 1 or self.rounds < 1:
            raise ArgumentError(
                f"--compress needs fraction in (0, 1], tolerance >= 0, epochs >= 1 and rounds >= 1; got {self}"
            )

    parse = classmethod(PruneGrowOptions.parse.__func__)

    @property
    def total_epochs(self) -> int:
        return (self.rounds + 1) * self.epochs


class Compress(PruneGrow):
    """The paper's compression experiment: prune `fraction` and fine-tune, round after round,
    until validation LL falls more than `tolerance` (relative) below where it started; the
    result is the last (smallest) model within the tolerance."""

    def __init__(self, options: CompressOptions, train, out: Path, on_round=None, backend: str = "auto", device=None):
        super().__init__(options, train, out, on_round, backend, device)

    @property
    def best(self) -> dict | None:
        if not self.rows:
            return None
        start = self.rows[0]["valid_ll"]
        if start is None:
            return self.rows[-1]
        ok = [r for r in self.rows if r["valid_ll"] >= start - self.opt.tolerance * abs(start)]
        return ok[-1]

    def _is_better(self, row: dict, best: dict | None) -> bool:
        return row is self.best

    def _next(self, trainer, round_: int):
        start = self.rows[0]["valid_ll"]
        last = self.rows[-1]["valid_ll"]
        if round_ >= self.opt.rounds or (start is not None and last < start - self.opt.tolerance * abs(start)):
            trainer.stopped = True
            return None
        from pccompile import compile as _compile
        from pccompile.passes import Prune, run

        circuit = run(
            trainer.model.to_circuit(), [Prune(fraction=self.opt.fraction)], data=self.train, device=self.device
        )
        return _compile(circuit, backend=self.backend, device=self.device)
