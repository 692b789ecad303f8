"""The backends' table: one entry per way to run a Program, with its executor, the rule that says
whether it can run for a device and dtype, and whether `auto` prefers it there.

`auto` takes the first entry (in table order) that is preferred for the device and dtype and can
run; the torch backend, last, runs anywhere. The CLI's `--backend` help and the compiler's check
of a name read the same table.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from typing import Callable

import torch
from pccompile.ir import ArgumentError, Program


@dataclass(frozen=True)
class Backend:
    name: str
    summary: str  # one phrase for --help
    make: Callable[[Program, dict], object]  # (program, its options) -> an Executor
    problem: Callable[[str, torch.dtype], str | None]  # why it cannot run on (device type, dtype); None if it can
    preferred: Callable[[str, torch.dtype], bool]  # whether `auto` tries it there (float64: the reference)
    captures_graphs: bool = False  # its steps on CUDA may be replayed as CUDA graphs
    dtypes: tuple[torch.dtype, ...] | None = (torch.float32,)  # what it computes in (None: any)
    emit: Callable[[Program, dict], str] | None = None  # its generated source (`pcc emit --target`)


def _make_torch(program: Program, options: dict):
    from .torch_backend import TorchExecutor

    return TorchExecutor(program, **options.get("torch", {}))


def _make_triton(program: Program, options: dict):
    from .triton import TritonExecutor, TritonOptions

    return TritonExecutor(program, TritonOptions(**options.get("triton", {})))


def _make_cpu(program: Program, options: dict):
    from .cpu import CpuExecutor

    return CpuExecutor(program, **options.get("cpu", {}))


def _emit_triton(program: Program, options: dict) -> str:
    from .triton import TritonOptions, emit

    return emit(program, TritonOptions(**options)).source


def _emit_cpu(program: Program, options: dict) -> str:
    from .cpu.plan import emit_source

    return emit_source(program, fuse=options.get("fuse", True))


def _triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def _triton_problem(device: str, dtype: torch.dtype) -> str | None:
    if not _triton_installed():
        return "backend 'triton' needs the triton package (pip install triton)"
    if dtype != torch.float32:
        return f"the triton backend computes in float32, not {dtype}; use backend='torch'"
    if device != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        return (
            "backend 'triton' runs on a CUDA device; on the CPU set TRITON_INTERPRET=1 "
            "(slow, for testing) or use backend 'torch'"
        )
    return None


def _cpu_problem(device: str, dtype: torch.dtype) -> str | None:
    if device != "cpu":
        return f"backend 'cpu' runs on the CPU, not on {device}; use backend 'auto' or 'torch'"
    if dtype != torch.float32:
        return f"the cpu backend computes in float32, not {dtype}; use backend='torch'"
    from .cpu import build_error

    problem = build_error()
    return None if problem is None else f"backend 'cpu' cannot build its kernels here: {problem}"


BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend(
            "triton",
            "emitted Triton kernels (CUDA)",
            _make_triton,
            _triton_problem,
            # a GPU without Triton installed runs torch without a word: nothing is broken there
            lambda device, dtype: device == "cuda" and dtype == torch.float32 and _triton_installed(),
            captures_graphs=True,
            emit=_emit_triton,
        ),
        Backend(
            "cpu",
            "emitted C kernels with OpenMP (the CPU)",
            _make_cpu,
            _cpu_problem,
            lambda device, dtype: device == "cpu" and dtype == torch.float32,
            emit=_emit_cpu,
        ),
        Backend(
            "torch",
            "plain torch ops, the reference (anywhere)",
            _make_torch,
            lambda d, t: None,
            lambda d, t: True,
            dtypes=None,
        ),
    )
}


def backend_help() -> str:
    """--backend's help text, from the table."""
    names = ", ".join(f"{b.name} ({b.summary})" for b in BACKENDS.values())
    return f"auto (the first that runs here of: triton on CUDA, cpu on the CPU, torch) or one of {names}"


_told: set[str] = set()


def choose_backend(name: str, device, dtype: torch.dtype | None = None) -> str:
    """The backend to run: `name` checked against the table, or auto's choice. A preferred
    backend that cannot run makes auto fall back, saying why once per process on stderr."""
    if name != "auto" and name not in BACKENDS:
        raise ArgumentError(f"unknown backend '{name}'; expected auto, {', '.join(BACKENDS)}")
    kind = torch.device(device).type if device is not None else "cpu"
    dtype = dtype or torch.float32
    if name != "auto":
        problem = BACKENDS[name].problem(kind, dtype)
        if problem is not None:
            raise ArgumentError(problem)
        return name
    for backend in BACKENDS.values():
        if not backend.preferred(kind, dtype):
            continue
        problem = backend.problem(kind, dtype)
        if problem is None:
            return backend.name
        if backend.name not in _told:
            _told.add(backend.name)
            print(f"pccompile: using the torch backend: {problem}", file=sys.stderr)
    return "torch"


def backend_options(fuse: bool, **given: dict | None) -> dict:
    """Every backend's options: `fuse` for all, and what the caller gave under its name."""
    unknown = set(given) - set(BACKENDS)
    if unknown:
        raise ArgumentError(f"options for unknown backends {sorted(unknown)}; expected {', '.join(BACKENDS)}")
    return {name: {"fuse": bool(fuse), **(given.get(name) or {})} for name in BACKENDS}


def make_executor(program: Program, backend: str, options: dict, dtype: torch.dtype = torch.float32):
    """The named backend's executor for a Program (its options under options[name])."""
    dtypes = BACKENDS[backend].dtypes
    if dtypes is not None and dtype not in dtypes:
        raise ArgumentError(f"the {backend} backend computes in float32, not {dtype}; use backend='torch'")
    return BACKENDS[backend].make(program, options)


def emitters() -> tuple[str, ...]:
    """The backends that generate source (`pcc emit --target`)."""
    return tuple(name for name, b in BACKENDS.items() if b.emit is not None)


def emit_source(program: Program, target: str, options: dict) -> str:
    """The generated source of backend `target` for a Program."""
    if target not in emitters():
        raise ArgumentError(f"--target: unknown target '{target}'; expected {' or '.join(emitters())}")
    return BACKENDS[target].emit(program, options)


def emit_help() -> str:
    """--target's help text, from the table."""
    return " or ".join(f"{name} ({BACKENDS[name].summary})" for name in emitters())
