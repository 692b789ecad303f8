"""The driver: any source -> IR -> passes -> Program -> CompiledCircuit."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx
import torch

from pccompile.codegen.backends import backend_options, choose_backend
from pccompile.ir import ArgumentError, Circuit, StructureError, compact_ids, verify
from pccompile.passes import (
    InitParams,
    Normalize,
    PackOptions,
    Pass,
    PassContext,
    PassManager,
    Vectorize,
    Verify,
    lower,
    parse_pipeline,
)

from . import builder
from .analysis import provider_for
from .dsl import parse, parse_file
from .nx import from_networkx
from .runtime import CompiledCircuit


class SignedCircuitError(StructureError):
    """compile() of a signed circuit, which the compiled backends do not evaluate; carries the
    circuit (after the passes) for what can still be done with it: show, check, pccompile.signed."""

    def __init__(self, circuit: Circuit):
        super().__init__(
            None,
            "the circuit is signed (negative weights): the compiled backends evaluate monotone circuits; "
            "evaluate and train it with pccompile.signed.SignedCircuit",
        )
        self.circuit = circuit

    def renamed(self, node):
        return self


def to_circuit(src) -> Circuit:
    """Front-end dispatch: .pc path, DSL text, networkx.DiGraph, builder Vec, or Circuit.

    Every front end verifies the circuit as the user wrote it (structure, and parameters where
    given) before any pass rewrites it: `vectorize` merges nodes and would otherwise hide a broken
    rule, e.g. a product with two children over one variable."""
    if isinstance(src, Circuit):
        verify(src)
        return src
    if isinstance(src, builder.Vec):
        return builder.build(src)
    if isinstance(src, nx.DiGraph):
        return from_networkx(src)
    if isinstance(src, Path) or (isinstance(src, str) and src.endswith(".pc") and "\n" not in src):
        path = Path(src)
        if not path.exists():
            raise ArgumentError(f"circuit file '{path}' does not exist")
        return parse_file(path)
    if isinstance(src, str):
        return parse(src)
    raise ArgumentError(
        f"cannot compile a {type(src).__name__}; pass a .pc path, DSL text, a networkx.DiGraph, "
        "a builder node or an ir.Circuit"
    )


@dataclass
class CompileReport:
    """What happened during compile (shown by `pcc check`)."""

    timings: dict[str, float] = field(default_factory=dict)
    passes: list[str] = field(default_factory=list)


def pipeline(passes: str | list[Pass] | None, seed: int) -> list[Pass]:
    """vectorize, normalize, [init, user passes,] verify. Without user passes, parameters the source
    leaves out are drawn by the runtime module directly into its tensors (fast, in log space);
    with user passes, `init` runs first so that those passes see every parameter."""
    user = parse_pipeline(passes) if isinstance(passes, str) else list(passes or [])
    if user:
        return [Vectorize(), Normalize(), InitParams(seed=seed), *user, Verify(require_params=True)]
    return [Vectorize(), Normalize(), Verify()]


def compile(
    src,
    *,
    passes: str | list[Pass] | None = None,
    backend: str = "auto",
    seed: int = 0,
    device=None,
    dtype=None,
    pack: PackOptions | None = None,
    report: CompileReport | None = None,
    trace: Callable | None = None,
    triton: dict | None = None,
    cpu: dict | None = None,
    cuda_graphs: bool = True,
    fuse: bool = True,
    data=None,
) -> CompiledCircuit:
    """Compile a circuit from any front end into a CompiledCircuit (a torch.nn.Module).

    passes: extra passes run after initialisation, as text ("normalize,verify") or Pass objects;
    the pipeline is vectorize, normalize, init{seed}, <passes>, verify (see `pcc check`); without
    extra passes, missing parameters are drawn by the runtime module instead of the init pass.
    backend: a name of codegen.backends' table; "auto" picks triton on CUDA, the cpu target on
    the CPU (where its kernels build) and torch otherwise, or for float64 ("triton" on the CPU
    needs TRITON_INTERPRET=1). triton: options for the Triton backend (codegen.triton.TritonOptions);
    cpu: options for the CPU target (codegen.cpu.CpuExecutor: `sparse_density`).
    seed: parameters not given in the source are drawn from it. dtype: parameter and computation
    precision (float32 default, float64 for exact checks). cuda_graphs: on the triton backend on
    CUDA, capture inference and EM steps as CUDA graphs per batch shape (pccompile.runtime.cuda_graphs).
    fuse: let sums compute the products only they read instead of storing them (codegen.fusion;
    both backends; off is the plain layer-by-layer reference, and `triton={"fuse": ...}` wins).
    data: rows the passes' analyses are computed on (edge flows for `prune`)."""
    report = report if report is not None else CompileReport()
    t0 = time.perf_counter()
    circuit = to_circuit(src)
    t1 = time.perf_counter()
    steps = pipeline(passes, seed)
    ctx = PassContext(provider=provider_for(data, device=device))
    circuit = PassManager(steps).run(circuit, trace, ctx)
    circuit = compact_ids(circuit)
    if circuit.meta.get("signed"):
        raise SignedCircuitError(circuit)
    t2 = time.perf_counter()
    program = lower(circuit, pack)
    t3 = time.perf_counter()
    chosen = choose_backend(backend, device, dtype)
    options = backend_options(fuse, triton=triton, cpu=cpu)
    options["cuda_graphs"] = bool(cuda_graphs)
    model = CompiledCircuit(
        circuit, program, backend=chosen, dtype=dtype or torch.float32, options=options, device=device
    )
    if device is not None:
        model = model.to(device)
    model.init_missing(seed)
    t4 = time.perf_counter()
    report.passes = [str(p) for p in steps]
    report.timings.update(
        {"front end": t1 - t0, "passes": t2 - t1, "lower": t3 - t2, "module": t4 - t3, "total": t4 - t0}
    )
    return model


def run_passes(circuit, pipeline, *, data=None, trace=None, device=None, group=None):
    """`passes.run` with the analyses the passes need (edge flows for `prune`) computed on
    `data` for the circuit each pass sees, in batches on `device` by the flow code; `group`
    (learn.distributed): on each rank's shard of `data`, all-reduced."""
    from .passes import run

    provider = provider_for(data, device=device, group=group)
    return run(circuit, pipeline, provider=provider, trace=trace)


def load_or_compile(spec, passes=None, seed: int = 0, report=None, device=None, backend: str = "auto", data=None):
    """A CompiledCircuit from a .pc file, or a saved .pcz model (with passes, recompiled from its
    circuit); `data` is what analyses such as prune's edge flows are computed on (a path or an
    array). `device` "cpu" or None: the CPU."""
    from pathlib import Path

    from .io import load
    from .io.data import load_array

    dev = None if device in (None, "cpu") else device
    spec = Path(spec)
    if spec.suffix == ".pcz":
        model = load(spec, device=dev, backend=backend)
        if not passes:
            return model
        circuit = model.to_circuit()
    else:
        circuit = spec
    rows = None if data is None or not passes else (load_array(data) if isinstance(data, str) else data)
    return compile(circuit, passes=passes, seed=seed, report=report, device=dev, backend=backend, data=rows)
