"""Query commands: sample and mpe."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer
from rich.table import Table

from .common import Backend, Spec, app, console, flag, load_model, run


@app.command()
def sample(
    spec: Spec,
    n: int = typer.Option(16, "-n", help="number of samples"),
    seed: int = typer.Option(0, help="random seed"),
    png: Optional[Path] = typer.Option(None, "--png", help="write an image grid (needs an image shape)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="write the samples as .npy"),
    backend: Backend = "auto",
):
    """Draw samples from a trained model (.pcz) or a circuit file.

    Example: [b]pcc sample runs/model.pcz -n 16 --png samples.png[/b]"""

    def go():
        from pccompile.io.plots import sample_grid
        from pccompile.ir import ArgumentError
        from pccompile.ir.limits import memory_bytes

        flag("-n", n)
        flag("--seed", seed)
        model = load_model(spec, backend=backend)
        need, allowed = n * max(model.num_vars, 1) * 8, memory_bytes() // 4  # the rows, beside the model's work
        if need > allowed:
            raise ArgumentError(
                f"-n {n:,} samples of {model.num_vars} variables need {need / 2**20:,.1f} MiB, beyond the "
                f"{allowed / 2**20:,.1f} MiB allowed (a quarter of the memory budget); draw fewer"
            )
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

    run(go)


@app.command()
def mpe(
    spec: Spec,
    data: Annotated[Path, typer.Option("--data", "-d", help="rows with -1 (or NaN) where values are missing")],
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="write the completed rows as .npy"),
    backend: Backend = "auto",
):
    """Most probable completion of each row (missing entries filled by max-product decoding).

    Example: [b]pcc mpe runs/model.pcz --data partial.npy -o completed.npy[/b]"""

    def go():
        from pccompile.io.data import check_data, load_array

        model = load_model(spec, backend=backend)
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

    run(go)
