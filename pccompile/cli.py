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


def main():
    app()


if __name__ == "__main__":
    main()
