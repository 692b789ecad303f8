"""Shared pieces of the `pcc` command line: the Typer app, consoles, option types, loading."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from pccompile.analysis.metrics import bits_per_dim
from pccompile.codegen.backends import backend_help
from pccompile.ir import PCError
from pccompile.ir.options import Positive, Range, Seed

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode="rich",
    help="""pccompile: compile probabilistic circuits to fused kernels, train and query them.

[b]Examples[/b]

  pcc demo                                 train an HCLT on the bundled digits (the main job)
  pcc check examples/mixture.pc            parse, verify, summarise
  pcc show examples/hmm.pc --program       the lowered, layered Program
  pcc emit examples/mixture.pc             the generated Triton source
  pcc train examples/digits.pc --data builtin:digits --valid builtin:digits:valid
  pcc sample runs/model.pcz -n 16 --png samples.png
""",
)
# Piped into a log, rich would fold tables to 80 columns and cut the numbers; a log gets room.
console = Console(width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160)
err = Console(stderr=True, soft_wrap=True)

Spec = Annotated[Path, typer.Argument(help="a .pc circuit file (or a .pcz saved model)", show_default=False)]
Passes = Annotated[
    Optional[str], typer.Option("--passes", "-p", help="extra passes, e.g. 'prune{fraction=0.5},grow{noise=0.1}'")
]
PassData = Annotated[
    Optional[str], typer.Option("--data", "-d", help="data the passes' analyses use (prune's edge flows)")
]
Backend = Annotated[str, typer.Option("--backend", help=backend_help())]


def load_model(
    spec: Path, passes: Optional[str] = None, seed: int = 0, report=None, device=None, backend="auto", data=None
):
    """pccompile.load_or_compile: a .pc file compiled, or a .pcz model loaded (recompiled with passes)."""
    import pccompile

    return pccompile.load_or_compile(spec, passes, seed, report=report, device=device, backend=backend, data=data)


def run(fn, interrupted: str = "interrupted"):
    """Turn PCErrors (and unreadable or unwritable paths, and running out of memory) into one clean
    message and exit code 2, and Ctrl-C into `interrupted` and exit code 130, instead of a traceback."""
    try:
        return fn()
    except PCError as e:
        err.print(f"error: {e}", style="red", highlight=False, markup=False)
        raise typer.Exit(2) from None
    except OSError as e:  # a path the command could not read or write (permissions, no such folder)
        where = f" '{e.filename}'" if getattr(e, "filename", None) else ""
        err.print(f"error: cannot access{where}: {e.strerror or e}", style="red", highlight=False, markup=False)
        raise typer.Exit(2) from None
    except MemoryError:
        err.print(
            "error: out of memory; try a smaller --batch-size or a smaller circuit",
            style="red",
            highlight=False,
            markup=False,
        )
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        err.print(interrupted, style="yellow", highlight=False, markup=False)
        raise typer.Exit(130) from None


MAX_SAMPLES = 1_000_000  # rows `pcc sample` draws at once (the model's memory check applies too)
MAX_GRID = 1024  # images in a PNG grid of samples
FLAGS = {  # the numeric flags typer parses, with the range each accepts (pccompile.ir.options)
    "-n": Annotated[int, Range(1, MAX_SAMPLES)],
    "--samples": Annotated[int, Range(0, MAX_GRID)],
    "--seed": Seed,
    "--batch-size": Positive,
    "--block-b": Annotated[int, Range(1, 4096)],
}


def flag(name: str, value):
    """Refuse a flag's value outside its declared range (FLAGS), with a message naming it."""
    from pccompile.ir.options import option_value

    return option_value(value, FLAGS[name], name)


def bpd(ll: float | None, num_vars: int) -> str:
    return "" if ll is None else f"{bits_per_dim(ll, num_vars):.4f}"


def fmt(v: float | None) -> str:
    return "" if v is None else f"{v:.4f}"
