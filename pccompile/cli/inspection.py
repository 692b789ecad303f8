"""Inspection commands: check, show, emit, eval."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import torch
import typer
from rich.table import Table

from pccompile.analysis.metrics import bits_per_dim
from pccompile.codegen.backends import emit_help
from pccompile.ir import ArgumentError

from .common import Backend, PassData, Passes, Spec, app, console, flag, load_model, run


@app.command()
def check(
    spec: Spec,
    passes: Passes = None,
    seed: int = typer.Option(0, help="seed for parameters not given"),
    backend: Backend = "auto",
):
    """Parse and verify a circuit; print a summary table.

    Example: [b]pcc check examples/mixture.pc[/b]"""
    import pccompile

    def go():
        from pccompile.compiler import SignedCircuitError
        from pccompile.passes import lower

        report = pccompile.CompileReport()
        flag("--seed", seed)
        try:
            model = load_model(spec, passes, seed, report, backend=backend)
            circuit, prog = model.circuit, model.program
        except SignedCircuitError as e:  # valid, but for pccompile.signed rather than the backends
            circuit, prog = e.circuit, lower(e.circuit)
        stats = circuit.stats()
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
        if report.passes:
            console.print("passes: " + " -> ".join(report.passes), highlight=False)
        if circuit.meta.get("signed"):
            console.print(
                "[green]ok[/]: the circuit is valid (acyclic, smooth, decomposable) and signed: "
                "evaluate and train it with pccompile.signed (docs/algebra.md)"
            )
        else:
            console.print("[green]ok[/]: the circuit is valid (acyclic, smooth, decomposable, normalised)")

    run(go)


@app.command()
def show(
    spec: Spec,
    ir: bool = typer.Option(False, "--ir", help="the circuit IR, one line per node vector"),
    program: bool = typer.Option(False, "--program", help="the lowered Program (layers, partitions)"),
    dsl: bool = typer.Option(False, "--dsl", help="the circuit printed back as DSL text"),
    no_params: bool = typer.Option(False, "--no-params", help="with --dsl: structure only"),
    passes: Passes = None,
    data: PassData = None,
    backend: Backend = "auto",
):
    """Print a circuit at one stage of compilation (default: --ir).

    Examples: [b]pcc show examples/mixture.pc --program[/b];
    [b]pcc show runs/demo/model.pcz -p "prune{fraction=0.9}" --data builtin:digits --ir[/b] (what pruning keeps)"""
    import pccompile

    def go():
        from pccompile.compiler import SignedCircuitError
        from pccompile.ir.text import format_circuit
        from pccompile.passes import lower

        try:
            model = load_model(spec, passes, backend=backend, data=data)
            circuit, prog = model.to_circuit(), model.program
        except SignedCircuitError as e:  # shown as it is: the backends do not run it
            circuit, prog = e.circuit, None
        if dsl:
            sys.stdout.write(pccompile.print_circuit(circuit, params=not no_params))
        elif program:
            print(prog if prog is not None else lower(circuit))
        else:
            print(format_circuit(circuit))

    run(go)


@app.command()
def emit(
    spec: Spec,
    passes: Passes = None,
    target: str = typer.Option("triton", "--target", help=f"the backend whose source to print: {emit_help()}"),
    block_b: int = typer.Option(64, "--block-b", help="batch tile of every kernel"),
    no_fuse: bool = typer.Option(False, "--no-fuse", help="keep product layers as separate kernels"),
    precision: str = typer.Option("tf32", help="tl.dot operands: tf32, bf16 or ieee (exact fp32); fp32 accumulation"),
    compile_for: str = typer.Option(
        None,
        "--compile-for",
        metavar="sm_NN",
        help="instead of printing the source, compile every kernel variant for "
        "this GPU architecture (e.g. sm_90 for an H100; no GPU needed) and "
        "print registers, spills and shared memory per variant",
    ),
):
    """Print the source generated for a circuit: kernels plus one launch line per partition.

    Examples: [b]pcc emit examples/mixture.pc[/b] (the Triton source);
    [b]pcc emit examples/digits.pc --target cpu[/b] (the CPU target's C kernels and launch plan);
    [b]pcc emit examples/digits.pc --compile-for sm_90[/b] (does every kernel compile for an H100, and
    does any spill registers?)"""

    def go():
        from pccompile.codegen.backends import emit_source

        flag("--block-b", block_b)
        model = load_model(spec, passes, backend="torch")
        if compile_for is not None:
            if target != "triton":
                raise ArgumentError("--compile-for compiles Triton kernels; it needs --target triton")
            from pccompile.codegen.triton import TritonOptions, emit

            emitted = emit(model.program, TritonOptions(block_b=block_b, fuse=not no_fuse, precision=precision))
            _compile_report(emitted, model.program, compile_for)
            return
        options = {"fuse": not no_fuse}
        if target == "triton":  # the Triton kernels' tiling and matrix-unit precision
            options.update(block_b=block_b, precision=precision)
        sys.stdout.write(emit_source(model.program, target, options))

    run(go)


def _compile_report(emitted, program, arch: str) -> None:
    from pccompile.codegen.triton.aot import compile_variants, kernel_variants
    from pccompile.ir import ArgumentError

    digits = arch.lower().removeprefix("sm_").removeprefix("sm")
    if not digits.isdigit():
        raise ArgumentError(f"--compile-for expects an architecture like sm_90, got '{arch}'")
    variants = kernel_variants(emitted, program)
    table = Table(title=f"{len(variants)} kernel variants compiled for sm_{digits}", header_style="bold")
    for col in ("kernel", "launches", "registers", "spill bytes", "shared bytes", "compile s", "variant"):
        table.add_column(col, justify="left" if col in ("kernel", "variant") else "right", no_wrap=col == "kernel")
    with console.status("compiling") as status:

        def progress(v):
            status.update(f"compiled {v.kernel} ({v.compile_s:.1f} s)")

        compile_variants(variants, emitted, arch=int(digits), progress=progress)
    for v in variants:
        u = v.usage
        spill = "" if v.error else str(u.get("STACK", "?"))
        table.add_row(
            v.kernel,
            str(v.launches),
            "" if v.error else str(u.get("REG", "?")),
            f"[red]{spill}[/red]" if spill not in ("", "0") else spill,
            "" if v.error else str(u.get("SHARED", "?")),
            f"{v.compile_s:.1f}",
            f"[red]{v.error}[/red]" if v.error else v.describe(),
        )
    console.print(table)
    if any(v.error for v in variants):
        raise typer.Exit(1)


@app.command("eval")
def eval_(
    spec: Spec,
    data: Annotated[Path, typer.Option("--data", "-d", help=".npy/.npz/.data/.txt file, one row per sample")],
    batch_size: int = typer.Option(1024, help="rows per batch"),
    passes: Passes = None,
    backend: Backend = "auto",
    device: str = typer.Option("cpu", help="cpu or cuda"),
):
    """Mean log-likelihood and bits per dimension of a circuit on data.

    Missing values (-1, or NaN for real variables) are marginalised.
    Example: [b]pcc eval runs/demo/model.pcz --data builtin:digits:test[/b]"""
    from pccompile.io.data import check_data, load_array

    def go():
        flag("--batch-size", batch_size)
        model = load_model(spec, passes, device=device, backend=backend)
        x = load_array(data)
        check_data(x, model.program.var_cats, model.program.var_names, str(data))
        t0 = time.perf_counter()
        total, n = 0.0, 0
        with torch.no_grad():
            for i in range(0, x.shape[0], batch_size):
                ll = model(x[i : i + batch_size])
                total += float(ll.double().sum())
                n += ll.shape[0]
        mean = total / max(n, 1)
        table = Table(show_header=True, header_style="bold")
        for col in ("rows", "mean log-likelihood", "bits per dimension", "seconds"):
            table.add_column(col, justify="right")
        table.add_row(
            f"{n:,}", f"{mean:.4f}", f"{bits_per_dim(mean, model.num_vars):.4f}", f"{time.perf_counter() - t0:.2f}"
        )
        console.print(table)

    run(go)
