"""`pcc`: the command line. Every command takes a .pc file (or a saved .pcz model where noted)."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import torch
import typer
from rich.console import Console
from rich.table import Table

from pccompile.ir import PCError

app = typer.Typer(
    add_completion=False, no_args_is_help=True, rich_markup_mode="rich",
    help="""pccompile: compile probabilistic circuits to fused kernels, train and query them.

[b]Examples[/b]

  pcc check examples/mixture.pc            parse, verify, summarise
  pcc show examples/hmm.pc --program       the lowered, layered Program
  pcc eval examples/mixture.pc --data x.npy    mean log-likelihood and bits/dim
""")
console = Console()
err = Console(stderr=True, soft_wrap=True)


def _load_model(spec: Path, passes: Optional[str] = None, seed: int = 0, report=None, device=None):
    import pccompile
    if spec.suffix == ".pcz":
        return pccompile.load(spec, device=device)
    return pccompile.compile(spec, passes=passes, seed=seed, report=report, device=device)


def _run(fn):
    """Turn PCErrors into a clean message and exit code 2 instead of a traceback."""
    try:
        return fn()
    except PCError as e:
        err.print(f"error: {e}", style="red", highlight=False, markup=False)
        raise typer.Exit(2) from None


Spec = Annotated[Path, typer.Argument(help="a .pc circuit file (or a .pcz saved model)", show_default=False)]
Passes = Annotated[Optional[str], typer.Option("--passes", "-p", help="extra passes, e.g. 'normalize,prune{fraction=0.5}'")]


@app.command()
def check(spec: Spec, passes: Passes = None, seed: int = typer.Option(0, help="seed for parameters not given")):
    """Parse and verify a circuit; print a summary table.

    Example: [b]pcc check examples/mixture.pc[/b]"""
    import pccompile

    def go():
        report = pccompile.CompileReport()
        model = _load_model(spec, passes, seed, report)
        stats = model.circuit.stats()
        prog = model.program
        table = Table(title=f"{spec}", show_header=True, header_style="bold")
        table.add_column("property")
        table.add_column("value", justify="right")
        for k, v in stats.items():
            table.add_row(k, f"{v:,}")
        n_parts = sum(len(layer.partitions) for layer in prog.layers)
        table.add_row("layers", f"{len(prog.layers):,}")
        table.add_row("partitions", f"{n_parts:,}")
        table.add_row("compile time", f"{report.timings.get('total', 0) * 1000:.1f} ms")
        console.print(table)
        console.print("[green]ok[/]: the circuit is valid (acyclic, smooth, decomposable, normalised)")
    _run(go)


@app.command()
def show(spec: Spec,
         ir: bool = typer.Option(False, "--ir", help="the circuit IR, one line per node vector"),
         program: bool = typer.Option(False, "--program", help="the lowered Program (layers, partitions)"),
         dsl: bool = typer.Option(False, "--dsl", help="the circuit printed back as DSL text"),
         no_params: bool = typer.Option(False, "--no-params", help="with --dsl: structure only"),
         passes: Passes = None):
    """Print a circuit at one stage of compilation (default: --ir).

    Example: [b]pcc show examples/mixture.pc --program[/b]"""
    import pccompile

    def go():
        model = _load_model(spec, passes)
        if dsl:
            sys.stdout.write(pccompile.print_circuit(model.to_circuit(), params=not no_params))
        elif program:
            print(model.program)
        else:
            print(format_ir(model.circuit))
    _run(go)


def format_ir(circuit) -> str:
    from pccompile.ir import InputNode, ProductNode
    lines = [repr(circuit)]
    for nid, n in circuit.nodes.items():
        if isinstance(n, InputNode):
            desc = f"input   {n.dist.name}({circuit.variables[n.var].name})"
        elif isinstance(n, ProductNode):
            desc = "product " + ", ".join(circuit.nodes[c].name for c in n.children)
        else:
            desc = "sum     " + ", ".join(circuit.nodes[c].name for c in n.children)
            if n.mask is not None:
                desc += f"  [mask {int(n.mask.sum())}/{n.mask.size} edges]"
            if n.tie is not None:
                desc += f"  [tied to {circuit.nodes[n.tie].name}]"
        root = "  <- root" if nid == circuit.root else ""
        lines.append(f"  %{nid:<4d} {n.name:>12s}[{n.size}] = {desc}{root}")
    return "\n".join(lines)


@app.command("eval")
def eval_(spec: Spec,
          data: Annotated[Path, typer.Option("--data", "-d", help=".npy/.npz/.data/.txt file, one row per sample")],
          batch_size: int = typer.Option(1024, help="rows per batch"),
          passes: Passes = None):
    """Mean log-likelihood and bits per dimension of a circuit on data.

    Missing values (-1, or NaN for real variables) are marginalised.
    Example: [b]pcc eval examples/mixture.pc --data examples/data/mixture.npy[/b]"""
    from pccompile.data import check_data, load_array

    def go():
        model = _load_model(spec, passes)
        x = load_array(data)
        check_data(x, model.program.var_cats, model.program.var_names, str(data))
        t0 = time.perf_counter()
        total, n = 0.0, 0
        with torch.no_grad():
            for i in range(0, x.shape[0], batch_size):
                ll = model(x[i:i + batch_size])
                total += float(ll.double().sum())
                n += ll.shape[0]
        mean = total / max(n, 1)
        table = Table(show_header=True, header_style="bold")
        for col in ("rows", "mean log-likelihood", "bits per dimension", "seconds"):
            table.add_column(col, justify="right")
        table.add_row(f"{n:,}", f"{mean:.4f}", f"{-mean / (model.num_vars * math.log(2)):.4f}",
                      f"{time.perf_counter() - t0:.2f}")
        console.print(table)
    _run(go)


def _bpd(ll: float | None, num_vars: int) -> str:
    return "" if ll is None else f"{-ll / (num_vars * math.log(2)):.4f}"


def _fmt(v: float | None) -> str:
    return "" if v is None else f"{v:.4f}"


def run_training(spec: Path, data: str, valid: Optional[str], test: Optional[str], *, epochs: int,
                 batch_size: int, optimizer: str, step_size: Optional[float], step_size_end: Optional[float],
                 schedule: str, pseudocount: float, device: str, seed: int, out: Path, resume: bool,
                 passes: Optional[str] = None, samples: int = 0) -> list:
    """Shared by `pcc train` and `pcc demo`: compile, train with progress and a table per epoch,
    checkpoint every epoch, write the model, the learning curve and (for images) samples."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    import pccompile
    from pccompile.data import check_data, load_array
    from pccompile.learn import Trainer, TrainConfig
    from pccompile.plots import learning_curve, sample_grid

    out.parent.mkdir(parents=True, exist_ok=True)
    ckpt = out.with_name(out.stem + ".ckpt.pcz")
    if resume and ckpt.exists():
        model = pccompile.load(ckpt)
        console.print(f"resuming from [b]{ckpt}[/b]")
    else:
        if resume:
            console.print(f"no checkpoint at {ckpt}; starting fresh")
        model = _load_model(spec, passes, seed)
    model = model.to(device)
    prog = model.program
    sets = {}
    for name, src in (("train", data), ("valid", valid), ("test", test)):
        if src is not None:
            x = load_array(src)
            check_data(x, prog.var_cats, prog.var_names, f"{name} data '{src}'")
            sets[name] = x
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, optimizer=optimizer, step_size=step_size,
                      step_size_end=step_size_end, schedule=schedule, pseudocount=pseudocount, seed=seed)
    V = model.num_vars
    s = model.circuit.stats()
    console.print(f"[b]{model.circuit.meta.get('name', spec.stem)}[/b]: {V} variables, {s['nodes']:,} nodes, "
                  f"{s['parameters']:,} parameters; {len(sets['train']):,} training rows; optimizer {optimizer}, "
                  f"step {cfg.step_size:g}, batch {batch_size}, device {device}")
    header = f"{'epoch':>5}  {'train LL':>10}  {'valid LL':>10}  {'test LL':>10}  {'valid bpd':>9}  {'step':>7}  {'sec':>6}"
    console.print(header, style="bold")
    progress = Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console, transient=True)
    task = None

    def on_batch(i, n):
        progress.update(task, completed=i, total=n)

    def on_epoch(r):
        progress.update(task, epoch=r.epoch + 1, completed=0)
        console.print(f"{r.epoch:>5}  {_fmt(r.train_ll):>10}  {_fmt(r.valid_ll):>10}  {_fmt(r.test_ll):>10}  "
                      f"{_bpd(r.valid_ll, V):>9}  {r.step_size:>7.4f}  {r.seconds:>6.2f}")

    trainer = Trainer(model, cfg, sets["train"], sets.get("valid"), sets.get("test"), checkpoint=ckpt,
                      on_batch=on_batch, on_epoch=on_epoch)
    if resume and ckpt.exists():
        trainer.restore()
        for r in trainer.history:
            console.print(
                f"{r.epoch:>5}  {_fmt(r.train_ll):>10}  {_fmt(r.valid_ll):>10}  {_fmt(r.test_ll):>10}  "
                f"{_bpd(r.valid_ll, V):>9}  {r.step_size:>7.4f}  {r.seconds:>6.2f}  (checkpoint)")
    with progress:
        task = progress.add_task("train", total=1, epoch=trainer.start_epoch + 1)
        history = trainer.run()
    pccompile.save(model, out)
    curve = out.with_name(out.stem + "_curve.png")
    learning_curve(history, curve, V, title=str(model.circuit.meta.get("name", spec.stem)))
    last = history[-1]
    table = Table(title="result", header_style="bold")
    for col in ("split", "mean log-likelihood", "bits per dimension"):
        table.add_column(col, justify="right")
    table.add_row("train (epoch avg)", _fmt(last.train_ll), _bpd(last.train_ll, V))
    if last.valid_ll is not None:
        table.add_row("valid", _fmt(last.valid_ll), _bpd(last.valid_ll, V))
    if last.test_ll is not None:
        table.add_row("test", _fmt(last.test_ll), _bpd(last.test_ll, V))
    console.print(table)
    console.print(f"model: {out}   checkpoint: {ckpt}   learning curve: {curve}")
    image = model.circuit.meta.get("image")
    if samples and image:
        png = out.with_name(out.stem + "_samples.png")
        xs = model.sample(samples, seed=seed).cpu().numpy()
        sample_grid(xs, image, png, max_value=float(prog.var_cats.max() - 1), title="samples")
        console.print(f"samples: {png}")
    return history


TrainData = Annotated[str, typer.Option("--data", "-d", help="training data: .npy/.npz/.data/.txt or builtin:digits")]


@app.command()
def train(spec: Spec, data: TrainData,
          valid: Optional[str] = typer.Option(None, "--valid", help="validation data, evaluated every epoch"),
          test: Optional[str] = typer.Option(None, "--test", help="test data, evaluated every epoch"),
          epochs: int = typer.Option(10, help="passes over the training data"),
          batch_size: int = typer.Option(512, "--batch-size", "-b", help="rows per mini-batch"),
          optimizer: str = typer.Option("em", help="em (mini-batch EM), em-full (full-batch EM), sgd or adam"),
          step_size: Optional[float] = typer.Option(None, "--step-size", help="EM step size (em 0.1, em-full 1.0) or learning rate"),
          step_size_end: Optional[float] = typer.Option(None, "--step-size-end", help="final step size of a decaying schedule"),
          schedule: str = typer.Option("constant", help="constant, linear or cosine decay of the step size"),
          pseudocount: float = typer.Option(0.1, help="Laplace smoothing added in every EM update"),
          device: str = typer.Option("cpu", help="cpu or cuda"),
          seed: int = typer.Option(0, help="seed for initial parameters and shuffling"),
          out: Path = typer.Option(Path("runs/model.pcz"), "--out", "-o", help="where to write the trained model"),
          resume: bool = typer.Option(False, "--resume", help="continue from the checkpoint next to --out"),
          samples: int = typer.Option(16, help="samples to draw into a PNG grid when the spec declares an image"),
          passes: Passes = None):
    """Train a circuit; a table row per epoch, a checkpoint every epoch, a learning-curve PNG.

    Example: [b]pcc train examples/digits.pc --data builtin:digits --valid builtin:digits:valid --epochs 10[/b]

    Interrupted? Run the same command with [b]--resume[/b]: training continues exactly where the last
    checkpoint ([i]OUT[/i].ckpt.pcz) left it."""
    _run(lambda: run_training(spec, data, valid, test, epochs=epochs, batch_size=batch_size, optimizer=optimizer,
                              step_size=step_size, step_size_end=step_size_end, schedule=schedule,
                              pseudocount=pseudocount, device=device, seed=seed, out=out, resume=resume,
                              passes=passes, samples=samples))


@app.command()
def sample(spec: Spec, n: int = typer.Option(16, "-n", help="number of samples"),
           seed: int = typer.Option(0, help="random seed"),
           png: Optional[Path] = typer.Option(None, "--png", help="write an image grid (needs an image shape)"),
           out: Optional[Path] = typer.Option(None, "--out", "-o", help="write the samples as .npy")):
    """Draw samples from a trained model (.pcz) or a circuit file.

    Example: [b]pcc sample runs/model.pcz -n 16 --png samples.png[/b]"""
    def go():
        from pccompile.ir import ArgumentError
        from pccompile.plots import sample_grid
        model = _load_model(spec)
        xs = model.sample(n, seed=seed).cpu().numpy()
        if out:
            np.save(out, xs)
            console.print(f"{n} samples -> {out}")
        if png:
            image = model.circuit.meta.get("image")
            if not image:
                raise ArgumentError("--png needs an image shape; add 'image = [H, W]' to the .pc file")
            sample_grid(xs, image, png, max_value=float(model.program.var_cats.max() - 1))
            console.print(f"image grid -> {png}")
        if not out and not png:
            table = Table(header_style="bold")
            names = model.program.var_names[:12]
            for nm in names:
                table.add_column(nm, justify="right")
            for row in xs[:20]:
                table.add_row(*[f"{v:g}" for v in row[:12]])
            console.print(table)
    _run(go)


@app.command()
def mpe(spec: Spec, data: Annotated[Path, typer.Option("--data", "-d", help="rows with -1 (or NaN) where values are missing")],
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="write the completed rows as .npy")):
    """Most probable completion of each row (missing entries filled by max-product decoding).

    Example: [b]pcc mpe runs/model.pcz --data partial.npy -o completed.npy[/b]"""
    def go():
        from pccompile.data import check_data, load_array
        model = _load_model(spec)
        x = load_array(data)
        check_data(x, model.program.var_cats, model.program.var_names, str(data))
        done = model.mpe(x).cpu().numpy()
        filled = int((x != done).sum()) if x.dtype.kind != "f" else int(np.isnan(x).sum() + (x == -1).sum())
        if out:
            np.save(out, done)
        table = Table(header_style="bold")
        for col in ("rows", "entries filled", "output"):
            table.add_column(col, justify="right")
        table.add_row(f"{len(done):,}", f"{filled:,}", str(out or "-"))
        console.print(table)
    _run(go)


DEMO_SPEC = """# HCLT over the bundled 8x8 digits (64 pixels, 17 gray levels)
var px[64] : categorical(17)
image = [8, 8]
name = "digits-hclt"
root = hclt(px, latents=32, data="builtin:digits")
"""


@app.command()
def demo(out_dir: Path = typer.Option(Path("runs/demo"), "--out-dir", help="where results go"),
         epochs: int = typer.Option(40, help="EM epochs")):
    """The main job end to end: compile an HCLT for the bundled digits, train it with mini-batch EM,
    report log-likelihoods, and save the model, a learning curve and samples as PNG."""
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = out_dir / "digits.pc"
    spec.write_text(DEMO_SPEC)
    _run(lambda: run_training(spec, "builtin:digits", "builtin:digits:valid", "builtin:digits:test", epochs=epochs,
                              batch_size=64, optimizer="em", step_size=0.2, step_size_end=0.02, schedule="linear",
                              pseudocount=0.1, device="cpu", seed=0, out=out_dir / "model.pcz", resume=False,
                              samples=16))


def main():
    app()


if __name__ == "__main__":
    main()
