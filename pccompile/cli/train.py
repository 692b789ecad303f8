"""Training commands: train (with resume) and demo (the main job)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from pccompile.learn.run import RunSettings, run_training

from .common import Backend, Passes, Spec, app, bpd, console, flag, fmt, run
from .rounds import report_rounds, round_note
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


class RichView:
    """learn.run's RunView on the terminal: rich tables, progress bars, PNGs."""

    def quiet(self) -> None:
        console.quiet = True

    def note(self, text: str) -> None:
        console.print(text)

    def announce(self, model, settings, sets: dict, cfg) -> None:
        s = model.circuit.stats()
        console.print(
            f"[b]{model.circuit.meta.get('name', settings.spec.stem)}[/b]: {model.num_vars} variables, "
            f"{s['nodes']:,} nodes, {s['parameters']:,} parameters; {len(sets['train']):,} training rows; "
            f"optimizer {cfg.optimizer}, step {cfg.step_size:g}, batch {cfg.batch_size}, device {settings.device}"
            + (f", softening {cfg.soften:g}" if cfg.soften else "")
            + (f", entropy reg {cfg.entropy:g}" if cfg.entropy else "")
        )

    @contextmanager
    def distilling(self):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, TextColumn("{task.fields[note]}"), console=console, transient=True) as bar:
            tasks: dict = {}

            def task(name, total):
                if name not in tasks:
                    tasks[name] = bar.add_task(name, total=total, note="")
                return tasks[name]

            def on_mae(step, total, loss):
                bar.update(task("LVD: training the MAE", total), completed=step, note=f"loss {loss:.4f}")

            def on_latent(done, total):
                bar.update(task("LVD: k-means per latent", total), completed=done)

            yield on_mae, on_latent

    def epochs(self, num_vars: int):
        return EpochTable(num_vars)

    def round_done(self, row: dict) -> None:
        round_note(row)

    def rounds(self, hook, out: Path, num_vars: int) -> None:
        report_rounds(hook, out, num_vars)

    def result(self, model, history, settings, saved) -> None:
        _report(model, history, settings, saved)


class EpochTable:
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


def _report(model, history, settings, saved=None) -> None:
    """The result table (of the last epoch, or of `saved`: the round a rounds learner kept), the
    learning-curve PNG and (for images) a PNG grid of samples."""
    from pccompile.io.plots import learning_curve, sample_grid

    spec, out, ckpt, samples, seed = settings.spec, settings.out, settings.checkpoint, settings.samples, settings.seed
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
    settings = RunSettings(**locals())  # the parameters are its fields, one for one
    run(
        lambda: _train(settings),
        interrupted=f"interrupted: the last finished epoch is saved in {settings.checkpoint}; "
        "run the same command with --resume to continue",
    )


def _train(settings: RunSettings) -> list:
    flag("--samples", settings.samples)  # every flag is checked before anything is trained or written
    return run_training(settings, RichView())


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
    settings = RunSettings(
        spec,
        "builtin:digits",
        "builtin:digits:valid",
        "builtin:digits:test",
        out=out_dir / "model.pcz",
        device=device,
        backend=backend,
        epochs=epochs,
        batch_size=64,
        optimizer="em",
        step_size=0.2,
        step_size_end=0.02,
        schedule="linear",
        pseudocount=0.1,
        finish=finish,
    )
    run(lambda: _train(settings))
