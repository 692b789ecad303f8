"""The rounds learners of "Sparse Probabilistic Circuits via Pruning and Growing": prune-grow
(each round prunes a fraction of the edges by flow on the training set, grows every node vector
back with noisy copies, and trains again; the model with the best validation log-likelihood over
all rounds is the result) and compression (prune and fine-tune until validation LL falls).

Both run inside the ordinary Trainer as a between-epochs hook, so checkpoints, exact resume and
the per-phase step-size schedule (one phase per round) come from the trainer. A round ends after
`epochs` epochs, or earlier when validation LL has not improved for `patience` epochs; the round's
result is its best epoch by validation LL (early stopping), counting the pruned and grown model
before any training as epoch 0 of its round. Files next to `out`, each rewritten atomically:
`<out>.rounds.json` (a table row per round), `<out>.best.pcz` (the best model so far) and
`<out>.round.pcz` (the best state of the round in progress, so a resumed run ends the round on
the same state).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pccompile.ir import ArgumentError
from pccompile.ir.limits import MAX_EPOCHS, MAX_ROUNDS, MAX_VECTOR_SIZE
from pccompile.ir.options import Fraction, NonNegative, Range, check_fields, given_options, parse_options

from .best import BestEpoch, better

Rounds = Annotated[int, Range(0, MAX_ROUNDS)]
Epochs = Annotated[int, Range(1, MAX_EPOCHS)]
Patience = Annotated[int, Range(0, MAX_EPOCHS)]


# The released SparsePC loop (sh/gen_loop.sh, samesize_loop.jl): up to 20 rounds of prune 75% by
# flow, double with log-weight noise sigma 0.3, then three mini-batch EM phases of 50 epochs
# (step 0.3 -> 0.1 -> 0.01 -> 0.001, batch 512, pseudocount 0.01, the last partial batch
# dropped), the early-stopping record starting after a 50-epoch warm-up; the loop ends at the
# second round in a row that is not the best (its `outpatience` of 1).
PRESETS = {
    "paper": {
        "rounds": 20,
        "fraction": 0.75,
        "factor": 2,
        "noise": 0.3,
        "growth": "released",
        "epochs": 150,
        "patience": 0,
        "warmup": 50,
        "round_patience": 2,
    }
}
PRESET_TRAINING = {
    "paper": {"batch_size": 512, "pseudocount": 0.01, "step_knots": (0.3, 0.1, 0.01, 0.001), "drop_last": True}
}


class _RoundOptions:
    """What both learners' options share: parsing from their flag's text, and the epoch budget
    (every round, the dense round 0 included, runs at most `epochs`)."""

    flag: ClassVar[str] = ""

    @classmethod
    def parse(cls, text: str):
        """'key=value,...' (any subset of the fields), e.g. 'rounds=3,fraction=0.75,patience=2'."""
        return parse_options(cls, text, cls.flag)

    def __post_init__(self):
        check_fields(self, f"{self.flag}: option '{{name}}'")

    @property
    def total_epochs(self) -> int:
        return (self.rounds + 1) * self.epochs


@dataclasses.dataclass(frozen=True)
class PruneGrowOptions(_RoundOptions):
    flag: ClassVar[str] = "--prune-grow"
    rounds: Rounds = 5  # prune-grow rounds after the dense one
    fraction: Fraction = 0.75  # of candidate edges pruned each round
    factor: Annotated[int, Range(1, MAX_VECTOR_SIZE)] = 2  # growth of every node vector
    noise: NonNegative = 0.1  # sigma of the growth noise
    growth: Literal["released", "independent"] = "released"  # the grow pass's noise form
    epochs: Epochs = 5  # at most this many EM epochs per round (the dense round included)
    patience: Patience = 0  # end a round after this many epochs without a better validation LL (0: never)
    # a round's first `warmup` epochs (its untrained epoch 0 included) can neither be its best nor
    # end it: after growing, validation LL dips for several epochs before it passes the start
    warmup: Patience = 0
    round_patience: Rounds = 0  # end the run after this many rounds in a row without a new best (0: never)
    # divide the EM pseudocount by `factor` at each growth: a grown node's copies share its flow,
    # so a fixed pseudocount per node weighs `factor` times more against the data every round
    pseudocount_growth: bool = False
    preset: Literal["none", "paper"] = "none"  # paper: the released SparsePC schedule (PRESETS)

    @classmethod
    def parse(cls, text: str):
        """'key=value,...'; with preset=NAME the preset's values stand for every key not given."""
        given = given_options(cls, text, cls.flag)
        preset = given.pop("preset", "none")
        return cls(**given) if preset == "none" else cls.from_preset(preset, **given)

    @classmethod
    def from_preset(cls, name: str = "paper", **overrides) -> "PruneGrowOptions":
        """A preset's options (PRESETS), with `overrides` for some of them."""
        return cls(**{**PRESETS[name], **overrides, "preset": name})

    def train_defaults(self) -> dict:
        """TrainConfig settings the preset stands for, where the user gave none."""
        return dict(PRESET_TRAINING.get(self.preset, {}))


@dataclasses.dataclass(frozen=True)
class CompressOptions(_RoundOptions):
    flag: ClassVar[str] = "--compress"
    fraction: Annotated[float, Range(0, 1, open_lo=True)] = 0.1  # of the remaining candidate edges pruned each round
    tolerance: NonNegative = 0.01  # stop once validation LL is this much (relative) below round 0's
    epochs: Epochs = 3  # fine-tuning epochs per round, at most
    rounds: Annotated[int, Range(1, MAX_ROUNDS)] = 30  # at most
    patience: Patience = 0  # as for prune-grow


class PruneGrow:
    """The between-epochs hook. `on_round(row)` sees each round's table row."""

    def __init__(self, options, train, out: Path, on_round=None, backend: str = "auto", device=None, group=None):
        """`group` (learn.distributed): the edge flows and log-likelihoods are all-reduced over
        the ranks, so every rank prunes and grows the same model; rank 0 alone writes the files."""
        self.opt, self.train, self.on_round = options, train, on_round
        self.backend, self.device, self.group = backend, device, group
        self.writer = group is None or group.is_main
        self.best_path = out.with_name(out.stem + ".best.pcz")
        self.rounds_path = out.with_name(out.stem + ".rounds.json")
        self.round_path = out.with_name(out.stem + ".round.pcz")
        self.rows: list[dict] = []
        self.round_best = self._round_best(0)  # the round's best epoch so far
        self.untrained: dict | None = None  # the round's epoch 0 (before training)

    # -- resume ---------------------------------------------------------------------------------
    def restore(self, epoch: int) -> None:
        """After a resume at `epoch`: the round rows written up to it, and the best state of the
        round in progress."""
        rows = _read_json(self.rounds_path)
        self.rows = [r for r in rows if isinstance(r, dict) and r.get("epoch", math.inf) <= epoch]
        self.round_best = self._round_best(len(self.rows))
        self.round_best.restore(epoch, since=self.round_start)

    def _round_best(self, round_: int) -> BestEpoch:
        return BestEpoch(self.round_path, self.opt.patience, tag=round_, writer=self.writer)

    def begin(self, trainer) -> None:
        """Before a fresh run's first epoch: the starting model is epoch 0 of round 0, so a round
        0 that only makes a trained model worse (its schedule restarts) ends on the model given.
        (Also after a resume: the round in progress gets its pseudocount.)"""
        self.base_pseudocount = trainer.config.pseudocount
        self._round_pseudocount(trainer)
        trainer.strategy.pseudocount = trainer.config.pseudocount
        if trainer.start_epoch == 0 and not self.rows:
            self._offer_untrained(trainer.model, self._untrained_record(trainer, trainer.model, 0))

    @property
    def round_start(self) -> int:
        """The epoch the round in progress started after."""
        return self.rows[-1]["epoch"] if self.rows else 0

    @property
    def best(self) -> dict | None:
        scored = [r for r in self.rows if r.get("valid_ll") is not None]
        return max(scored, key=lambda r: r["valid_ll"]) if scored else (self.rows[-1] if self.rows else None)

    # -- every epoch ------------------------------------------------------------------------------
    def __call__(self, trainer, rec):
        record = {"epoch": rec.epoch, "train_ll": rec.train_ll, "valid_ll": rec.valid_ll, "test_ll": rec.test_ll}
        in_round = rec.epoch - self.round_start
        if in_round >= self._warmup or in_round >= self.opt.epochs:  # the round's last epoch always counts
            self.round_best.offer(trainer.model, record)
        if in_round < self.opt.epochs and not self.round_best.stalled(rec.epoch):
            return None
        return self._end_round(trainer, rec)

    @property
    def _warmup(self) -> int:
        return getattr(self.opt, "warmup", 0)

    def _offer_untrained(self, model, record: dict) -> None:
        """A round's epoch 0 (the model before training) may be its best, unless in the warm-up."""
        self.untrained = record
        if self._warmup == 0:
            self.round_best.offer(model, record)

    def _end_round(self, trainer, rec):
        """The round's row from its best epoch (whose state the model takes back), the best
        model over rounds, then the next round's model (None: the run ends)."""
        from pccompile.io import save

        best = self.round_best.record
        best_epoch = best["epoch"]
        if best_epoch != rec.epoch:  # early stopping: back to the round's best epoch
            self.round_best.load_into(trainer.model)
        stats = trainer.model.circuit.stats()
        start = self.round_start
        row = {
            "round": len(self.rows),  # 0: the dense circuit
            "epoch": rec.epoch,  # where the round ended (resume bookkeeping)
            "best_epoch": best_epoch - start,  # of the round's epochs; 0: before any training
            "untrained_valid_ll": (self.untrained or {}).get("valid_ll"),  # epoch 0: the dip after growing shows
            "nodes": stats["nodes"],
            "edges": stats["sum edges"],
            "parameters": stats["parameters"],
            "train_ll": best["train_ll"],
            "valid_ll": best["valid_ll"],
            "test_ll": best["test_ll"],
            "seconds": sum(r.seconds for r in trainer.history[start:]),
        }
        previous = self.best
        self.rows.append(row)
        if self.writer:
            if self._is_better(row, previous):
                save(trainer.model, self.best_path, extra={"prune_grow_round": row})
            tmp = self.rounds_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.rows, indent=1))
            tmp.replace(self.rounds_path)
        if self.on_round:
            self.on_round(row)
        model = self._next(trainer, row["round"])
        if model is None:
            trainer.stopped = True
            return None
        self.round_best = self._round_best(len(self.rows))
        self._offer_untrained(model, self._untrained_record(trainer, model, rec.epoch))
        self._round_pseudocount(trainer)  # the trainer builds the next round's strategy with it
        return model

    def _round_pseudocount(self, trainer) -> None:
        """With `pseudocount_growth`: round r (grown r times) trains with base / factor^r."""
        if getattr(self.opt, "pseudocount_growth", False):
            value = self.base_pseudocount / self.opt.factor ** len(self.rows)
            trainer.config = dataclasses.replace(trainer.config, pseudocount=value)

    def _untrained_record(self, trainer, model, epoch: int) -> dict:
        """Epoch 0 of the next round: the pruned (and grown) model before any training."""
        from .trainer import mean_log_likelihood

        def ll(x):
            return None if x is None else mean_log_likelihood(model, x, group=self.group)

        return {"epoch": epoch, "train_ll": ll(self.train), "valid_ll": ll(trainer.valid), "test_ll": ll(trainer.test)}

    def _is_better(self, row: dict, previous: dict | None) -> bool:
        return previous is None or better(row["valid_ll"], previous["valid_ll"])

    def _out_of_patience(self) -> bool:
        """`round_patience` rounds in a row have ended without a new best."""
        patience = getattr(self.opt, "round_patience", 0)
        if not patience or self.best is None:
            return False
        return len(self.rows) - 1 - self.rows.index(self.best) >= patience

    def _passes(self, round_: int, seed: int = 0) -> list:
        """Prune, then grow with noise seeded by the run's seed and the round."""
        import numpy as np

        from pccompile.passes import Grow, Prune

        o = self.opt
        grow_seed = round_ if seed == 0 else int(np.random.SeedSequence([seed, round_]).generate_state(1)[0])
        return [Prune(fraction=o.fraction), Grow(factor=o.factor, noise=o.noise, seed=grow_seed, form=o.growth)]

    def _next(self, trainer, round_: int):
        """The model of the next round: pruned by flow on the training set, then grown."""
        from pccompile import compile as _compile
        from pccompile import run_passes as run

        if round_ >= self.opt.rounds or self._out_of_patience():
            return None
        passes = self._passes(round_, trainer.config.seed)
        circuit = run(trainer.model.to_circuit(), passes, data=self.train, device=self.device, group=self.group)
        # the next round keeps the model's dtype (a float64 run stays float64)
        return _compile(circuit, backend=self.backend, device=self.device, dtype=trainer.model.dtype)


class Compress(PruneGrow):
    """The paper's compression experiment: prune `fraction` and fine-tune, round after round,
    until validation LL falls more than `tolerance` (relative) below where it started; the
    result is the last (smallest) model within the tolerance."""

    @property
    def best(self) -> dict | None:
        if not self.rows:
            return None
        start = self.rows[0]["valid_ll"]
        if start is None:
            return self.rows[-1]
        ok = [r for r in self.rows if r["valid_ll"] >= start - self.opt.tolerance * abs(start)]
        return ok[-1]

    def _is_better(self, row: dict, previous: dict | None) -> bool:
        return row is self.best

    def _passes(self, round_: int, seed: int = 0) -> list:
        from pccompile.passes import Prune

        return [Prune(fraction=self.opt.fraction)]

    def _next(self, trainer, round_: int):
        start, last = self.rows[0]["valid_ll"], self.rows[-1]["valid_ll"]
        if start is not None and last < start - self.opt.tolerance * abs(start):
            return None
        return super()._next(trainer, round_)


def _read_json(path: Path) -> list:
    try:
        rows = json.loads(path.read_text())
    except (ValueError, OSError):
        return []
    return rows if isinstance(rows, list) else []


def prune_grow(
    model,
    train,
    valid=None,
    test=None,
    *,
    options: PruneGrowOptions | CompressOptions = PruneGrowOptions(),
    config=None,
    out: str | Path | None = None,
    backend: str = "auto",
    device=None,
    resume: bool = False,
    group=None,
):
    """The prune-grow learner (or, given CompressOptions, compression) from Python: train `model`
    (a compiled circuit) for a dense round, then the rounds. `config` (a TrainConfig) gives the EM
    settings; its epochs are set by the options. Returns (best model, round rows). The rounds'
    files and the checkpoint go next to `out` (a temporary folder when None); `resume` continues
    from that checkpoint. `group` (learn.distributed.join()): data-parallel over its ranks; `out`
    must then lie on a filesystem every rank sees (rank 0 writes, every rank reads the best)."""
    import tempfile

    import pccompile

    from .trainer import TrainConfig, Trainer

    if group is not None and out is None:
        raise ArgumentError("prune_grow with a group needs out=: a path every rank can read")
    preset = options.train_defaults() if isinstance(options, PruneGrowOptions) else {}
    config = config or TrainConfig(**preset)  # a preset's schedule unless a config is given
    config = dataclasses.replace(config, epochs=options.total_epochs, phase_epochs=options.epochs)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(out) if out is not None else Path(tmp) / "model.pcz"
        cls = Compress if isinstance(options, CompressOptions) else PruneGrow
        hook = cls(options, train, out, backend=backend, device=device, group=group)
        ckpt = out.with_name(out.stem + ".ckpt.pcz")
        trainer = Trainer(model, config, train, valid, test, checkpoint=ckpt, between_epochs=hook, group=group)
        if resume and ckpt.exists():
            trainer.restore()
            hook.restore(trainer.start_epoch)
        hook.begin(trainer)
        trainer.run()
        if group is not None:
            group.barrier()  # rank 0 has written the best round
        return pccompile.load(hook.best_path, backend=backend, device=device), list(hook.rows)
