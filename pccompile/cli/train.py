"""Training commands: train (with resume) and demo (the main job)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from .common import Backend, Passes, Spec, app, bpd, console, flag, fmt, load_model, run
from .rounds import attach_rounds_learner, best_round, round_options
from .train_options import (
    CompressOption,
    DistributedOption,
    DropLastOption,
    EntropyOption,
    FinishOption,
    LVDOption,
    PatienceOption,
    PruneGrowOption,
    SoftenOption,
    StepSizeOption,
    TrainData,
)


def run_training(
    spec: Path,
    data: str,
    valid: Optional[str],
    test: Optional[str],
    *,
    device: str,
    out: Path,
    resume: bool,
    passes: Optional[str] = None,
    samples: int = 0,
    backend: str = "auto",
    prune_grow: Optional[str] = None,
    compress: Optional[str] = None,
    patience: int = 0,
    lvd: Optional[str] = None,
    distributed: bool = False,
    **learning,
) -> list:
    """Shared by `pcc train` and `pcc demo`: compile, train with progress and a table per epoch,
    checkpoint every epoch, write the model, the learning curve and (for images) samples.
    `learning`: the TrainConfig settings by their CLI names (epochs, batch_size, optimizer,
    step_size, step_size_end, schedule, pseudocount, seed, finish, soften, entropy)."""
    import pccompile
    from pccompile.learn import Trainer

    flag("--samples", samples)  # every flag is checked before anything is trained or written
    lvd_options = _lvd_options(lvd)
    pg = round_options(prune_grow, compress)
    group = _join(distributed)
    _check_patience(patience if pg is None else pg.patience, valid, "--patience" if pg is None else "patience=")
    cfg = _train_config(pg, **learning)
    seed = cfg.seed
    out.parent.mkdir(parents=True, exist_ok=True)
    ckpt = out.with_name(out.stem + ".ckpt.pcz")
    model = _model_or_checkpoint(spec, ckpt, resume, passes, seed, device, backend)
    sets = _data_sets(model, data, valid, test)
    _announce(model, spec, sets, cfg, device)
    if group is not None:  # every split, the model and the settings, before LVD's collectives too
        from dataclasses import asdict

        group.check_same_data({k: sets.get(k) for k in ("train", "valid", "test")}, model, asdict(cfg))
    if lvd_options is not None and not (resume and ckpt.exists()):
        _distill(model, sets, lvd_options, group)
    table = _EpochTable(model.num_vars)
    trainer = Trainer(
        model,
        cfg,
        sets["train"],
        sets.get("valid"),
        sets.get("test"),
        checkpoint=ckpt,
        on_batch=table.on_batch,
        on_epoch=table.on_epoch,
        group=group,
    )
    hook = None if pg is None else attach_rounds_learner(trainer, pg, sets["train"], out, backend, device, group)
    keep = None if hook is not None or "valid" not in sets else _attach_keep_best(trainer, out, patience, group)
    if resume and ckpt.exists():
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
        from pccompile.learn.distributed import leave

        leave()  # every rank has trained: rank 0 alone goes on to write the model, curve and samples
        if not group.is_main:
            return history
    model, saved = _saved_model(trainer, hook, keep, out, backend, device)
    pccompile.save(model, out)
    _report(model, history, spec, out, ckpt, samples, seed, saved)
    return history


def _join(distributed: bool) -> object | None:
    """The data-parallel group of a `--distributed` run (under torchrun), None otherwise. Ranks
    other than 0 print nothing: rank 0 speaks, draws the progress bars and writes the files."""
    if not distributed:
        return None
    import torch

    from pccompile.ir.env import env_value
    from pccompile.learn.distributed import join

    if torch.cuda.is_available():  # NCCL: each process on its own GPU ("cuda" is then that one)
        torch.cuda.set_device(env_value("LOCAL_RANK"))
    group = join()
    if not group.is_main:
        console.quiet = True
    return group


def _lvd_options(text: Optional[str]):
    if text is None:
        return None
    from pccompile.lvd import LVDOptions

    return LVDOptions.parse(text)


def _distill(model, sets: dict, options, group=None) -> None:
    """Latent variable distillation before EM: the encoder (trained or loaded from its cache),
    k-means per latent and the counting MLE, each under a progress bar, then a line of figures.
    Data-parallel: rank 0 trains the encoder, the ranks share the k-means and the counts."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from pccompile.learn.trainer import mean_log_likelihood
    from pccompile.lvd import distill

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[note]}"),
        console=console,
        transient=True,
    ) as bar:
        tasks = {}

        def on(name, total):
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=total, note="")
            return tasks[name]

        def on_mae(step, total, loss):
            bar.update(on("LVD: training the MAE", total), completed=step, note=f"loss {loss:.4f}")

        def on_latent(done, total):
            bar.update(on("LVD: k-means per latent", total), completed=done)

        report = distill(model, sets["train"], options, on_mae=on_mae, on_latent=on_latent, group=group)
    enc = report.encoder
    where = (
        f" ({'trained, cached at' if enc.trained else 'loaded from'} {enc.cached})"
        if getattr(enc, "cached", None)
        else ""
    )
    lls = "; ".join(
        f"{name} LL {mean_log_likelihood(model, x, group=group):.3f}" for name, x in sets.items() if name != "test"
    )
    s = report.seconds
    console.print(
        f"LVD: encoder {options.encoder}{where}; {report.latents} latents assigned by k-means; "
        f"MLE in {s['mle']:.2f} s (encoder {s['encoder']:.1f} s, k-means {s['kmeans']:.1f} s); {lls}"
    )


TRAIN_DEFAULTS = {"batch_size": 512, "pseudocount": 0.1, "drop_last": False}


def _train_config(pg, *, epochs: int, finish: int = 0, step_size=None, **fields):
    """The TrainConfig of a run; a rounds learner sets the epochs (its rounds x epochs per round,
    the schedule restarting each round) and takes no finishing phase. Settings left unset take
    the --prune-grow preset's values, then TRAIN_DEFAULTS."""
    import pccompile
    from pccompile.learn import TrainConfig

    if finish and pg is not None:
        raise pccompile.ArgumentError("--finish adds full-batch EM epochs to plain training, not to a rounds learner")
    fields |= _step_sizes(step_size)
    preset = pg.train_defaults() if hasattr(pg, "train_defaults") else {}
    if step_size is not None or fields.get("schedule", "constant") != "constant":
        preset.pop("step_knots", None)  # a step size or schedule of the user's own wins
    for key, value in {**TRAIN_DEFAULTS, **preset}.items():
        if fields.get(key) is None:
            fields[key] = value
    return TrainConfig(
        epochs=epochs if pg is None else pg.total_epochs,
        phase_epochs=None if pg is None else pg.epochs,
        finish_epochs=finish,
        **fields,
    )


def _step_sizes(text) -> dict:
    """--step-size as TrainConfig fields: one number (step_size), or comma-separated knots."""
    from pccompile.ir.options import Range, option_value

    if text is None:
        return {}
    number = Annotated[float, Range(0, None)]
    if isinstance(text, (int, float)):
        return {"step_size": float(text)}
    parts = text.split(",")
    values = tuple(option_value(p.strip(), number, "--step-size") for p in parts)
    return {"step_size": values[0]} if len(values) == 1 else {"step_knots": values}


def _check_patience(patience: int, valid: Optional[str], flag: str) -> None:
    """Patience counts epochs without a better validation LL: without validation data it would
    silently never stop a run."""
    from pccompile.ir import ArgumentError

    if patience and valid is None:
        raise ArgumentError(f"{flag} needs validation data (--valid): it counts epochs without a better validation LL")


def _announce(model, spec: Path, sets: dict, cfg, device: str) -> None:
    s = model.circuit.stats()
    console.print(
        f"[b]{model.circuit.meta.get('name', spec.stem)}[/b]: {model.num_vars} variables, {s['nodes']:,} nodes, "
        f"{s['parameters']:,} parameters; {len(sets['train']):,} training rows; optimizer {cfg.optimizer}, "
        f"step {cfg.step_size:g}, batch {cfg.batch_size}, device {device}"
        + (f", softening {cfg.soften:g}" if cfg.soften else "")
        + (f", entropy reg {cfg.entropy:g}" if cfg.entropy else "")
    )


def _saved_model(trainer, hook, keep, out: Path, backend: str, device: str):
    """The model to save and the label and figures of the result table: the best round of a
    rounds learner, the best epoch of a run with validation data, or the last epoch."""
    if hook is not None:
        return best_round(hook, out, backend, device), (
            f"round {hook.best['round']} (best valid LL)",
            *_lls(hook.best),
        )
    if keep is not None and keep.best.record is not None:
        keep.best.load_into(trainer.model)
        best = keep.best.record
        return trainer.model, (f"epoch {best['epoch']} (best valid LL)", *_lls(best))
    return trainer.model, None


def _attach_keep_best(trainer, out: Path, patience: int, group=None):
    """Plain training with validation data: the best epoch is the saved model; `patience` stops
    early. Data-parallel: rank 0 alone writes the best epoch's file."""
    from pccompile.learn import KeepBest

    writer = group is None or group.is_main
    keep = trainer.between_epochs = KeepBest(out.with_name(out.stem + ".best.pcz"), patience, writer)
    return keep


def _lls(row: dict) -> tuple:
    return row["train_ll"], row["valid_ll"], row["test_ll"]


class _EpochTable:
    """The epoch table printed as training goes, under a progress bar over the batches."""

    def __init__(self, num_vars: int):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.num_vars = num_vars
        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.task = None
        cols = ("epoch", 5), ("train LL", 10), ("valid LL", 10), ("test LL", 10), ("valid bpd", 9), ("step", 7)
        console.print("  ".join(f"{name:>{w}}" for name, w in cols) + f"  {'sec':>6}", style="bold")

    def row(self, r, note: str = "") -> None:
        console.print(
            f"{r.epoch:>5}  {fmt(r.train_ll):>10}  {fmt(r.valid_ll):>10}  {fmt(r.test_ll):>10}  "
            f"{bpd(r.valid_ll, self.num_vars):>9}  {r.step_size:>7.4f}  {r.seconds:>6.2f}{note}"
        )

    def on_batch(self, i: int, n: int) -> None:
        self.progress.update(self.task, completed=i, total=n)

    def on_epoch(self, r) -> None:
        self.progress.update(self.task, epoch=r.epoch + 1, completed=0)
        self.row(r)

    def run(self, trainer):
        with self.progress:
            self.task = self.progress.add_task("train", total=1, epoch=trainer.start_epoch + 1)
            return trainer.run()


def _model_or_checkpoint(spec: Path, ckpt: Path, resume: bool, passes, seed: int, device: str, backend: str):
    """The model to train: the checkpoint's when resuming from one, else compiled from `spec`."""
    import pccompile

    if resume and ckpt.exists():
        console.print(f"resuming from [b]{ckpt}[/b]")
        return pccompile.load(ckpt, backend=backend, device=None if device == "cpu" else device)
    if resume:
        console.print(f"no checkpoint at {ckpt}; starting fresh")
    return load_model(spec, passes, seed, device=device, backend=backend)


def _data_sets(model, data: str, valid: Optional[str], test: Optional[str]) -> dict:
    """The named splits, each loaded and checked against the model's variables."""
    from pccompile.data import check_data, load_array

    sets = {}
    for name, src in (("train", data), ("valid", valid), ("test", test)):
        if src is not None:
            x = load_array(src)
            check_data(x, model.program.var_cats, model.program.var_names, f"{name} data '{src}'")
            sets[name] = x
    return sets


def _report(model, history, spec: Path, out: Path, ckpt: Path, samples: int, seed: int, saved=None) -> None:
    """The result table (of the last epoch, or of `saved`: the round a rounds learner kept), the
    learning-curve PNG and (for images) a PNG grid of samples."""
    from pccompile.plots import learning_curve, sample_grid

    V = model.num_vars
    curve = out.with_name(out.stem + "_curve.png")
    learning_curve(history, curve, V, title=str(model.circuit.meta.get("name", spec.stem)))
    last = history[-1]
    train_ll, valid_ll, test_ll = (last.train_ll, last.valid_ll, last.test_ll) if saved is None else saved[1:]
    title = "result" if saved is None else f"saved model: {saved[0]}"
    table = Table(title=title, header_style="bold")
    for col in ("split", "mean log-likelihood", "bits per dimension"):
        table.add_column(col, justify="right")
    # an epoch's train LL is its average over the epoch's steps; a round's best may be an untrained model
    train_label = "train" if saved is not None and saved[0].startswith("round") else "train (epoch avg)"
    table.add_row(train_label, fmt(train_ll), bpd(train_ll, V))
    if valid_ll is not None:
        table.add_row("valid", fmt(valid_ll), bpd(valid_ll, V))
    if test_ll is not None:
        table.add_row("test", fmt(test_ll), bpd(test_ll, V))
    console.print(table)
    console.print(f"model: {out}   checkpoint: {ckpt}   learning curve: {curve}")
    image = model.circuit.meta.get("image")
    if samples and image:
        png = out.with_name(out.stem + "_samples.png")
        xs = model.sample(samples, seed=seed).cpu().numpy()
        sample_grid(xs, image, png, max_value=float(model.program.var_cats.max() - 1), title="samples")
        console.print(f"samples: {png}")


@app.command()
def train(
    spec: Spec,
    data: TrainData,
    valid: Optional[str] = typer.Option(None, "--valid", help="validation data, evaluated every epoch"),
    test: Optional[str] = typer.Option(None, "--test", help="test data, evaluated every epoch"),
    epochs: int = typer.Option(10, help="passes over the training data"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", help="rows per mini-batch [default: 512]"),
    optimizer: str = typer.Option("em", help="em (mini-batch EM), em-full (full-batch EM), sgd or adam"),
    step_size: StepSizeOption = None,
    step_size_end: Optional[float] = typer.Option(
        None, "--step-size-end", help="final step size of a decaying schedule"
    ),
    schedule: str = typer.Option(
        "constant",
        help="constant, linear or cosine decay of the step size, or three-phase: start -> 100*end -> 10*end -> end "
        "in three equal linear phases (0.3 or 1 -> 0.1 -> 0.01 -> 0.001 for end 0.001, the released codes' ramps)",
    ),
    pseudocount: Optional[float] = typer.Option(
        None, help="Laplace smoothing added in every EM update [default: 0.1, or the --prune-grow preset's]"
    ),
    drop_last: DropLastOption = None,
    device: str = typer.Option("cpu", help="cpu or cuda"),
    seed: int = typer.Option(0, help="seed for initial parameters and shuffling"),
    out: Path = typer.Option(Path("runs/model.pcz"), "--out", "-o", help="where to write the trained model"),
    resume: bool = typer.Option(False, "--resume", help="continue from the checkpoint next to --out"),
    samples: int = typer.Option(16, help="samples to draw into a PNG grid when the spec declares an image"),
    passes: Passes = None,
    backend: Backend = "auto",
    prune_grow: PruneGrowOption = None,
    patience: PatienceOption = 0,
    finish: FinishOption = 0,
    compress: CompressOption = None,
    soften: SoftenOption = 0.0,
    entropy: EntropyOption = 0.0,
    lvd: LVDOption = None,
    distributed: DistributedOption = False,
):
    """Train a circuit; a table row per epoch, a checkpoint every epoch, a learning-curve PNG.

    Example: [b]pcc train examples/digits.pc --data builtin:digits --valid builtin:digits:valid --epochs 10[/b]

    Interrupted? Run the same command with [b]--resume[/b]: training continues exactly where the last
    checkpoint ([i]OUT[/i].ckpt.pcz) left it."""
    ckpt = out.with_name(out.stem + ".ckpt.pcz")
    run(
        lambda: run_training(
            spec,
            data,
            valid,
            test,
            epochs=epochs,
            batch_size=batch_size,
            optimizer=optimizer,
            step_size=step_size,
            step_size_end=step_size_end,
            schedule=schedule,
            pseudocount=pseudocount,
            drop_last=drop_last,
            device=device,
            seed=seed,
            out=out,
            resume=resume,
            passes=passes,
            samples=samples,
            backend=backend,
            prune_grow=prune_grow,
            compress=compress,
            patience=patience,
            finish=finish,
            soften=soften,
            entropy=entropy,
            lvd=lvd,
            distributed=distributed,
        ),
        interrupted=f"interrupted: the last finished epoch is saved in {ckpt}; "
        "run the same command with --resume to continue",
    )


DEMO_SPEC = """# HCLT over the bundled 8x8 digits (64 pixels, 17 gray levels)
var px[64] : categorical(17)
image = [8, 8]
name = "digits-hclt"
root = hclt(px, latents=32, data="builtin:digits")
"""


@app.command()
def demo(
    out_dir: Path = typer.Option(Path("runs/demo"), "--out-dir", help="where results go"),
    epochs: int = typer.Option(40, help="mini-batch EM epochs"),
    finish: int = typer.Option(1, help="full-batch EM epochs after them (1 was best on validation data)"),
    backend: Backend = "auto",
    device: str = typer.Option("cpu", help="cpu or cuda"),
):
    """The main job end to end: compile an HCLT for the bundled digits, train it with mini-batch EM
    and one full-batch EM epoch, report log-likelihoods, and save the model, a learning curve and samples as PNG."""
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = out_dir / "digits.pc"
    spec.write_text(DEMO_SPEC)
    run(
        lambda: run_training(
            spec,
            "builtin:digits",
            "builtin:digits:valid",
            "builtin:digits:test",
            epochs=epochs,
            batch_size=64,
            optimizer="em",
            step_size=0.2,
            step_size_end=0.02,
            schedule="linear",
            pseudocount=0.1,
            device=device,
            seed=0,
            out=out_dir / "model.pcz",
            resume=False,
            samples=16,
            backend=backend,
            finish=finish,
        )
    )
