"""A training run from a circuit file to saved files: compile (or resume), load the splits,
distil latents (LVD), train with a rounds learner or keep the best epoch, save the model.

`RunSettings` holds everything a run is given, by the command line's names; `run_training`
does the work and tells a `RunView` what to show (the CLI's tables, bars and plots), so a front
end only parses settings and prints."""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from pccompile.ir import ArgumentError

TRAIN_DEFAULTS = {"batch_size": 512, "pseudocount": 0.1, "drop_last": False}
"""TrainConfig settings left unset and not given by a --prune-grow preset."""


@dataclass(frozen=True)
class RunSettings:
    """One run: the data and files, the learner, and the TrainConfig settings by their
    command-line names (None: the preset's value, then TRAIN_DEFAULTS)."""

    spec: Path
    data: str
    valid: str | None = None
    test: str | None = None
    out: Path = Path("runs/model.pcz")
    device: str = "cpu"
    backend: str = "auto"
    resume: bool = False
    passes: str | None = None
    samples: int = 16
    prune_grow: str | None = None
    compress: str | None = None
    patience: int = 0
    lvd: str | None = None
    distributed: bool = False
    # -- TrainConfig ---------------------------------------------------------------------------
    epochs: int = 10
    batch_size: int | None = None
    optimizer: str = "em"
    step_size: Any = None  # one number, or knots as text "1,0.1,0.01"
    step_size_end: float | None = None
    schedule: str = "constant"
    pseudocount: float | None = None
    drop_last: bool | None = None
    seed: int = 0
    finish: int = 0
    soften: float = 0.0
    entropy: float = 0.0

    @property
    def checkpoint(self) -> Path:
        return self.out.with_name(self.out.stem + ".ckpt.pcz")

    @property
    def torch_device(self) -> str | None:
        """The device for compile and load (None: the CPU)."""
        return None if self.device == "cpu" else self.device

    def learning(self) -> dict:
        """The TrainConfig settings, by their command-line names."""
        keys = ("epochs", "batch_size", "optimizer", "step_size", "step_size_end", "schedule", "pseudocount")
        keys += ("drop_last", "seed", "finish", "soften", "entropy")
        return {k: getattr(self, k) for k in keys}


class RunView(Protocol):
    """What a front end shows of a run (the CLI's is cli/train.py's RichView)."""

    def quiet(self) -> None:
        """This process is a data-parallel rank other than 0: show nothing."""

    def note(self, text: str) -> None:
        """One line (resuming, a round's figures, the LVD summary)."""

    def announce(self, model, settings: RunSettings, sets: dict, cfg) -> None:
        """The run's first line: the circuit, the data, the optimiser."""

    def distilling(self) -> contextlib.AbstractContextManager:
        """Progress while LVD runs; yields (on_mae(step, total, loss), on_latent(done, total))."""

    def epochs(self, num_vars: int):
        """The epoch table: on_batch(i, n), on_epoch(record), row(record, note), run(trainer)."""

    def round_done(self, row: dict) -> None:
        """A rounds learner's round ended."""

    def rounds(self, hook, out: Path, num_vars: int) -> None:
        """The rounds' table and plot, when a rounds learner finishes."""

    def result(self, model, history, settings: RunSettings, saved) -> None:
        """The result table, the learning curve and (for images) samples."""


def run_training(settings: RunSettings, view: RunView) -> list:
    """Compile or resume, train with a table per epoch and a checkpoint every epoch, save the
    model (the best round or epoch where there is one) and report. Returns the epoch records."""
    import pccompile

    from .trainer import Trainer

    s = settings
    lvd_options = _lvd_options(s.lvd)
    pg = round_options(s.prune_grow, s.compress)
    group = _join(s.distributed, view)
    check_patience(s.patience if pg is None else pg.patience, s.valid, "--patience" if pg is None else "patience=")
    cfg = train_config(pg, **s.learning())
    s.out.parent.mkdir(parents=True, exist_ok=True)
    resuming = s.resume and s.checkpoint.exists()
    model = _model_or_checkpoint(s, view)
    sets = data_sets(model, s.data, s.valid, s.test)
    view.announce(model, s, sets, cfg)
    if group is not None:  # every split, the model and the settings, before LVD's collectives too
        group.check_same_data({k: sets.get(k) for k in ("train", "valid", "test")}, model, asdict(cfg))
    if lvd_options is not None and not resuming:
        distil(model, sets, lvd_options, view, group)
    table = view.epochs(model.num_vars)
    trainer = Trainer(
        model, cfg, sets["train"], sets.get("valid"), sets.get("test"), checkpoint=s.checkpoint,
        on_batch=table.on_batch, on_epoch=table.on_epoch, group=group,
    )  # fmt: skip
    hook = None if pg is None else attach_rounds_learner(trainer, pg, sets["train"], s, view, group)
    keep = None if hook is not None or "valid" not in sets else _attach_keep_best(trainer, s.out, s.patience, group)
    if resuming:
        trainer.restore()
        for r in trainer.history:
            table.row(r, "  (checkpoint)")
        if hook is not None:
            hook.restore(trainer.start_epoch)
        if keep is not None:
            keep.restore(trainer.start_epoch, trainer.finish_from)
    if hook is not None:
        hook.begin(trainer)
    history = table.run(trainer)
    if group is not None:
        from .distributed import leave

        leave()  # every rank has trained: rank 0 alone goes on to write the model, curve and samples
        if not group.is_main:
            return history
    model, saved = _saved_model(trainer, hook, keep, s, view)
    pccompile.save(model, s.out)
    view.result(model, history, s, saved)
    return history


# -- the learners asked for ----------------------------------------------------------------------
def round_options(prune_grow: str | None, compress: str | None):
    """The options of the rounds learner asked for (prune-grow or compression), or None."""
    from .rounds import CompressOptions, PruneGrowOptions

    if prune_grow is not None and compress is not None:
        raise ArgumentError("--prune-grow and --compress are two learners; choose one")
    if prune_grow is not None:
        return PruneGrowOptions.parse(prune_grow)
    return None if compress is None else CompressOptions.parse(compress)


def attach_rounds_learner(trainer, pg, train, settings: RunSettings, view: RunView, group=None):
    """The rounds learner (prune-grow or compression) as the trainer's between-epochs hook;
    data-parallel, every rank prunes by the all-reduced flows and rank 0 writes the files."""
    from .rounds import Compress, CompressOptions, PruneGrow

    cls = Compress if isinstance(pg, CompressOptions) else PruneGrow
    hook = trainer.between_epochs = cls(
        pg, train, settings.out, on_round=view.round_done, backend=settings.backend,
        device=settings.torch_device, group=group,
    )  # fmt: skip
    return hook


def _lvd_options(text: str | None):
    if text is None:
        return None
    from pccompile.lvd import LVDOptions

    return LVDOptions.parse(text)


def _join(distributed: bool, view: RunView):
    """The data-parallel group of a `--distributed` run (under torchrun), None otherwise. Ranks
    other than 0 show nothing: rank 0 speaks, draws the progress bars and writes the files."""
    if not distributed:
        return None
    import torch

    from pccompile.ir.env import env_value

    from .distributed import join

    if torch.cuda.is_available():  # NCCL: each process on its own GPU ("cuda" is then that one)
        torch.cuda.set_device(env_value("LOCAL_RANK"))
    group = join()
    if not group.is_main:
        view.quiet()
    return group


def check_patience(patience: int, valid: str | None, flag: str) -> None:
    """Patience counts epochs without a better validation LL: without validation data it would
    silently never stop a run."""
    if patience and valid is None:
        raise ArgumentError(f"{flag} needs validation data (--valid): it counts epochs without a better validation LL")


# -- the TrainConfig ------------------------------------------------------------------------------
def train_config(pg, *, epochs: int, finish: int = 0, step_size=None, **given):
    """The TrainConfig of a run; a rounds learner sets the epochs (its rounds x epochs per round,
    the schedule restarting each round) and takes no finishing phase. Settings left unset take
    the --prune-grow preset's values, then TRAIN_DEFAULTS."""
    from .trainer import TrainConfig

    if finish and pg is not None:
        raise ArgumentError("--finish adds full-batch EM epochs to plain training, not to a rounds learner")
    given |= step_sizes(step_size)
    preset = pg.train_defaults() if hasattr(pg, "train_defaults") else {}
    if step_size is not None or given.get("schedule", "constant") != "constant":
        preset.pop("step_knots", None)  # a step size or schedule of the user's own wins
    for key, value in {**TRAIN_DEFAULTS, **preset}.items():
        if given.get(key) is None:
            given[key] = value
    return TrainConfig(
        epochs=epochs if pg is None else pg.total_epochs,
        phase_epochs=None if pg is None else pg.epochs,
        finish_epochs=finish,
        **given,
    )


def step_sizes(text) -> dict:
    """--step-size as TrainConfig fields: one number (step_size), or comma-separated knots."""
    from typing import Annotated

    from pccompile.ir.options import Range, option_value

    if text is None:
        return {}
    number = Annotated[float, Range(0, None)]
    if isinstance(text, (int, float)):
        return {"step_size": float(text)}
    values = tuple(option_value(p.strip(), number, "--step-size") for p in text.split(","))
    return {"step_size": values[0]} if len(values) == 1 else {"step_knots": values}


# -- the model and the data ----------------------------------------------------------------------
def _model_or_checkpoint(s: RunSettings, view: RunView):
    """The model to train: the checkpoint's when resuming from one, else compiled from the spec."""
    import pccompile

    if s.resume and s.checkpoint.exists():
        view.note(f"resuming from [b]{s.checkpoint}[/b]")
        return pccompile.load(s.checkpoint, backend=s.backend, device=s.torch_device)
    if s.resume:
        view.note(f"no checkpoint at {s.checkpoint}; starting fresh")
    return pccompile.load_or_compile(s.spec, s.passes, s.seed, device=s.device, backend=s.backend)


def data_sets(model, data: str, valid: str | None, test: str | None) -> dict:
    """The named splits, each loaded and checked against the model's variables."""
    from pccompile.io.data import check_data, load_array

    sets = {}
    for name, src in (("train", data), ("valid", valid), ("test", test)):
        if src is not None:
            x = load_array(src)
            check_data(x, model.program.var_cats, model.program.var_names, f"{name} data '{src}'")
            sets[name] = x
    return sets


def distil(model, sets: dict, options, view: RunView, group=None) -> None:
    """Latent variable distillation before EM (the encoder, k-means per latent and the counting
    MLE, under the view's progress), then one line of figures. Data-parallel: rank 0 trains the
    encoder, the ranks share the k-means and the counts."""
    from pccompile.lvd import distill

    from .trainer import mean_log_likelihood

    with view.distilling() as (on_mae, on_latent):
        report = distill(model, sets["train"], options, on_mae=on_mae, on_latent=on_latent, group=group)
    enc = report.encoder
    cached = getattr(enc, "cached", None)
    where = f" ({'trained, cached at' if enc.trained else 'loaded from'} {cached})" if cached else ""
    lls = "; ".join(
        f"{name} LL {mean_log_likelihood(model, x, group=group):.3f}" for name, x in sets.items() if name != "test"
    )
    t = report.seconds
    view.note(
        f"LVD: encoder {options.encoder}{where}; {report.latents} latents assigned by k-means; "
        f"MLE in {t['mle']:.2f} s (encoder {t['encoder']:.1f} s, k-means {t['kmeans']:.1f} s); {lls}"
    )


# -- what is saved --------------------------------------------------------------------------------
def _attach_keep_best(trainer, out: Path, patience: int, group=None):
    """Plain training with validation data: the best epoch is the saved model; `patience` stops
    early. Data-parallel: rank 0 alone writes the best epoch's file."""
    from .best import KeepBest

    writer = group is None or group.is_main
    keep = trainer.between_epochs = KeepBest(out.with_name(out.stem + ".best.pcz"), patience, writer)
    return keep


def _lls(row: dict) -> tuple:
    return row["train_ll"], row["valid_ll"], row["test_ll"]


def _saved_model(trainer, hook, keep, s: RunSettings, view: RunView):
    """The model to save and the label and figures of the result table: the best round of a
    rounds learner (after the rounds' report), the best epoch of a run with validation data, or
    the last epoch."""
    import pccompile

    if hook is not None:
        model = pccompile.load(hook.best_path, backend=s.backend, device=s.torch_device)
        view.rounds(hook, s.out, model.num_vars)
        return model, (f"round {hook.best['round']} (best valid LL)", *_lls(hook.best))
    if keep is not None and keep.best.record is not None:
        keep.best.load_into(trainer.model)
        best = keep.best.record
        return trainer.model, (f"epoch {best['epoch']} (best valid LL)", *_lls(best))
    return trainer.model, None
