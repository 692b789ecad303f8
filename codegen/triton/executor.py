"""TritonExecutor: runs a Program through its emitted Triton module.

It implements the Executor interface (codegen.executor) on its own, so autograd, flows, EM and
the queries work unchanged on either backend. Kernels compute in float32 (compile() refuses triton with float64).
The emitted module is written to a disk cache keyed by a hash of its source (which is a function
of the Program and the options) and imported from there, because Triton compiles from files.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import torch
from pccompile.codegen.layers import ProgramTensors
from pccompile.ir import FIRST_ROW, ONE_ROW, ZERO_ROW, ArgumentError, Program
from pccompile.ir.env import env_value
from torch import nn

from ..executor import ProgramOrderDecoder
from ..layers.inputs import partition_log_probs
from .emitter import Emitted, TritonOptions, emit
from .inputs import input_tensors


def cache_dir() -> Path:
    return Path(env_value("PCCOMPILE_CACHE") or Path.home() / ".cache" / "pccompile") / "triton"


def load_module(em: Emitted):
    """Import the emitted source from the cache (writing it first if absent)."""
    name = f"pcc_kernels_{em.digest}"
    if name in sys.modules:
        return sys.modules[name]
    d = cache_dir()
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{name}.py"
    if not path.exists() or path.read_text() != em.source:
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(em.source)
        tmp.replace(path)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class TritonExecutor(ProgramOrderDecoder, nn.Module):
    """Runs the emitted kernels on float32 buffers laid out as the emitter renumbered them
    (Emitted.perm): `out_row` is the renumbered root. `complete` passes and max-product values,
    which the torch decoder reads (sampling, MPE), are put back in Program order; `tensors`
    holds the Program-order partitions that decoder reads."""

    def __init__(self, program: Program, options: TritonOptions | None = None):
        super().__init__()
        self.program = program
        self.tensors = ProgramTensors(program)
        self.root_row = program.root_row
        self.num_inputs = self.tensors.num_inputs
        self.num_params = program.num_sum_params
        self.poison = False  # tests: fill buffers with NaN first, so any row read before written shows
        self.options = options or TritonOptions()
        self.emitted = emit(program, self.options)
        self.kernels = load_module(self.emitted)
        self.num_index = len(self.emitted.index_arrays)
        for k, a in enumerate(self.emitted.index_arrays):
            self.register_buffer(f"tx{k}", torch.as_tensor(a), persistent=False)
        self.register_buffer("perm", torch.as_tensor(self.emitted.perm), persistent=False)
        self.out_row = int(self.emitted.perm[program.root_row])
        self._compiled: set[tuple] = set()  # (device, batch-size class) already precompiled

    @property
    def index(self) -> list[torch.Tensor]:
        return [getattr(self, f"tx{k}") for k in range(self.num_index)]

    @staticmethod
    def _check(t: torch.Tensor) -> None:
        if t.dtype != torch.float32:
            raise ArgumentError(
                f"the triton backend computes in float32, got {t.dtype}; use backend='torch' for float64"
            )

    def precompile(self, B: int, device, warm=None) -> int:
        """Compile, in parallel threads, every kernel specialisation a normal pass (inputs,
        forward, backward, EM) launches for a batch of B rows, so the first step does not compile
        them one after another. Triton's compiler releases the GIL (bench/README.md has the
        figures), so a many-core GPU host takes about as long as the slowest variant. Triton specialises on B only by whether it is 1 or a multiple of 16.
        Returns the number of launches warmed; on any failure, warns and leaves compiling to the
        first launches. `warm` (tests) replaces Triton's warm-up and lifts the CUDA-only guard."""
        device = torch.device(device)
        key = (str(device), B == 1, B % 16 == 0)
        if key in self._compiled:
            return 0
        if warm is None and (device.type != "cuda" or os.environ.get("TRITON_INTERPRET") == "1"):
            return 0
        self._compiled.add(key)
        try:
            from concurrent.futures import ThreadPoolExecutor

            from .aot import collect_launches

            unique = {}
            for c in collect_launches(self.emitted, self.program, B, device, complete=False, module=self.kernels):
                spec = tuple(
                    str(a.dtype)
                    if isinstance(a, torch.Tensor)
                    else (a == 1, a % 16 == 0)
                    if isinstance(a, int) and not isinstance(a, bool)
                    else type(a).__name__
                    for a in c.args
                )
                unique.setdefault((c.kernel, spec, tuple(sorted(c.kwargs.items()))), c)
            warm = warm or (lambda c: c.fn.warmup(*c.args, grid=c.grid, **c.kwargs))
            with ThreadPoolExecutor(max_workers=min(32, os.cpu_count() or 1)) as pool:
                list(pool.map(warm, unique.values()))
            return len(unique)
        except Exception as e:  # compiling at first launch still works
            import warnings

            warnings.warn(f"parallel kernel precompilation failed ({e!r}); kernels compile at first launch")
            return 0

    def _buffer(self, B: int, device, complete: bool) -> torch.Tensor:
        """Fresh mars: padding rows set; every other row NaN when poisoned (tests)."""
        self.precompile(B, device)
        rows = self.emitted.num_rows_complete if complete else self.emitted.num_rows
        mars = torch.empty(rows, B, dtype=torch.float32, device=device)
        mars[ZERO_ROW] = float("-inf")
        mars[ONE_ROW] = 0.0
        if self.poison:
            mars[FIRST_ROW:] = float("nan")
        return mars

    def _in_program_order(self, mars: torch.Tensor) -> torch.Tensor:
        return mars.index_select(0, self.perm)

    def _ext(self, logw: torch.Tensor) -> torch.Tensor:
        return self.tensors.extend_logw(logw, torch.float32)

    def forward_mars(self, input_logp, logw, complete: bool = False):
        self._check(input_logp)
        mars = self._buffer(input_logp.shape[1], input_logp.device, complete)
        mars[FIRST_ROW : FIRST_ROW + self.num_inputs] = input_logp
        self.kernels.forward(mars, self._ext(logw), self.index, mars.shape[1], complete)
        return self._in_program_order(mars) if complete else mars

    def node_values(self, x_int, x_real, inputs, logw, complete: bool = False, reuse: bool = False):
        """mars from the encoded batch directly: the input kernels write the input rows in place
        (no [rows, B] index, value or copy temporaries, which cost more memory traffic than the
        sum layers at large latents). No autograd: for inference, flows and EM."""
        self._check(logw)
        B = x_int.shape[0]
        mars = self._buffer(B, x_int.device, complete)
        params = [input_tensors(part, p) for part, p in zip(self.program.input_partitions, inputs)]
        x_int = x_int.contiguous()
        x_real = x_int if x_real is None else x_real.contiguous()
        self.kernels.inputs(mars, x_int, x_real, params, self.index, B)
        self.kernels.forward(mars, self._ext(logw), self.index, B, complete)
        return self._in_program_order(mars) if complete else mars

    def forward_max(self, input_logp, logw):
        self._check(input_logp)
        mars = self._buffer(input_logp.shape[1], input_logp.device, True)
        mars[FIRST_ROW : FIRST_ROW + self.num_inputs] = input_logp
        self.kernels.forward_max(mars, self._ext(logw), self.index, mars.shape[1])
        return self._in_program_order(mars)

    def backward_flows(self, mars, logw, grad_root, reuse: bool = False):
        """Flows in the kernels' row order (input rows, which the callers read, are unmoved).
        `reuse` is accepted and ignored: buffers are fresh (CUDA graphs keep their own)."""
        self._check(mars)
        flows = torch.zeros_like(mars)
        flows[self.out_row] = grad_root.float()
        grad = torch.zeros(self.num_params + 1, dtype=torch.float32, device=mars.device)
        self.kernels.backward(mars, flows, self._ext(logw), grad, self.index, mars.shape[1])
        flows[ZERO_ROW] = 0
        flows[ONE_ROW] = 0
        return flows, grad[:-1]

    def em_dense_blocks(self, logits, logw, flows, step, pseudocount) -> bool:
        """The dense blocks by the fused kernel; the masked tail is left to the runtime."""
        self._check(logits)
        if not isinstance(step, torch.Tensor):
            step = torch.full((1,), float(step), dtype=torch.float32, device=logits.device)
        self.kernels.em_update(
            logits, logw.contiguous(), flows.contiguous(), step.float().reshape(1), float(pseudocount)
        )
        return True

    def em_inputs(self, part, h, stats, step, pseudocount: float) -> bool:
        """No input kernel: its family's M-step runs."""
        return False

    def input_stats(self, part, vars_t, flows: torch.Tensor, x_int, x_real, deferred: bool = False) -> dict | None:
        """No input kernel: its family computes the statistics."""
        return None

    def input_block(self, part, params: dict, vars_t, x_int, x_real) -> torch.Tensor:
        """The torch backend's input rows (the autograd path reads no kernel here)."""
        return partition_log_probs(part, params, vars_t, x_int, x_real)
