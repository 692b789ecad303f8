"""Ahead-of-time compilation of an emitted module for a GPU target, on a machine without one.

Triton compiles to PTX and a cubin (with the ptxas shipped in its wheel) without touching a
driver, so every kernel variant a Program launches can be compiled for, say, an H100 (sm_90)
on the CPU. That catches what the interpreter cannot: kernels that do not compile for the real
target, and register spills (a `STACK` above zero), which cost more than launches do.

`kernel_variants` runs the emitted launchers against recorders instead of kernels to collect
each distinct (kernel, argument types, constexprs); `compile_variants` compiles them and reads
the resource usage from the cubin with the cuobjdump that ships with Triton.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import types
from dataclasses import dataclass, field

import torch
from pccompile.ir import Program

from .emitter import Emitted
from .executor import cache_dir, load_module

LAUNCHED = ("input_fwd", "prod_fwd", "prod_bwd", "sum_fwd", "sum_max", "sum_bwd", "sum_bwd_params", "em_dense")


@dataclass
class Variant:
    kernel: str
    signature: dict[str, str]  # argument -> Triton type ("*fp32", "i32", "constexpr", ...)
    constexprs: dict[str, object]
    num_warps: int = 4
    launches: int = 0  # how many launch sites use it
    usage: dict[str, int] = field(default_factory=dict)  # REG, STACK, SHARED, LOCAL
    compile_s: float = 0.0
    error: str | None = None

    @property
    def key(self) -> tuple:
        return (
            self.kernel,
            tuple(sorted(self.signature.items())),
            tuple(sorted(self.constexprs.items())),
            self.num_warps,
        )

    def describe(self) -> str:
        """Compact: shape, tile, variant flags and warps (e.g. `G=64 K=64 F=2 tile 64x32x64 dot fused 8w`)."""
        c = self.constexprs
        shape = " ".join(f"{k}={c[k]}" for k in ("G", "K", "F", "M") if k in c)
        tile = "x".join(str(c[k]) for k in ("BLOCK_G", "BLOCK_K", "BLOCK_M", "BLOCK_R", "BLOCK_B") if k in c)
        flags = [name.lower() for name in ("USE_DOT", "FUSED", "DENSE", "BF16") if c.get(name)]
        flags = ["dot" if f == "use_dot" else f for f in flags]
        return " ".join(x for x in (shape, f"tile {tile}", *flags, f"{self.num_warps}w") if x)


def _type_of(value) -> str:
    if isinstance(value, torch.Tensor):
        return "*" + {torch.float32: "fp32", torch.int64: "i64", torch.int32: "i32", torch.float64: "fp64"}[value.dtype]
    if isinstance(value, bool):
        return "i1"
    if isinstance(value, int):
        return "i32" if -(2**31) <= value < 2**31 else "i64"
    if isinstance(value, float):
        return "fp32"
    raise TypeError(f"cannot type launch argument {value!r}")


@dataclass
class LaunchCall:
    """One kernel launch as the emitted launchers would make it."""

    kernel: str
    fn: object  # the JITFunction (or the interpreter's function)
    grid: tuple
    args: tuple
    kwargs: dict


class _Collector:
    def __init__(self, name, fn, calls: list):
        self.name, self.fn, self.calls = name, fn, calls

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.calls.append(LaunchCall(self.name, self.fn, grid, args, kwargs))

        return launch


def collect_launches(
    emitted: Emitted, program: Program, batch: int, device="cpu", complete: bool = True, module=None
) -> list[LaunchCall]:
    """The launches the emitted launchers make for a batch of `batch` rows (inputs, forward,
    max-product with `complete`, backward, EM), recorded instead of run. Tensors are one-element
    stand-ins on `device`: a launch's specialisation depends on their dtypes and alignment only."""
    module = module or load_module(emitted)
    calls: list[LaunchCall] = []
    env = dict(vars(module))
    for name in LAUNCHED:
        if name in env:
            env[name] = _Collector(name, getattr(module, name), calls)

    def rebind(fn):
        return types.FunctionType(fn.__code__, env, fn.__name__, fn.__defaults__)

    f32 = torch.empty(1, device=device)  # stand-ins: launchers only pass them on
    x_int = torch.empty(1, dtype=torch.int64, device=device)
    idx = [torch.empty(1, dtype=torch.int64, device=device) for _ in emitted.index_arrays]
    params = [(f32, f32) for _ in program.input_partitions]
    rebind(module.inputs)(f32, x_int, f32, params, idx, batch)
    rebind(module.forward)(f32, f32, idx, batch, complete)
    if complete:
        rebind(module.forward_max)(f32, f32, idx, batch)
    rebind(module.backward)(f32, f32, f32, f32, idx, batch)
    rebind(module.em_update)(f32, f32, f32, f32, 0.1)
    return calls


def kernel_variants(emitted: Emitted, program: Program, batch: int = 512) -> list[Variant]:
    """Every distinct kernel specialisation the launchers of `emitted` would compile."""
    found: dict[tuple, Variant] = {}
    for call in collect_launches(emitted, program, batch):
        kwargs = dict(call.kwargs)
        warps = kwargs.pop("num_warps", 4)
        params = inspect.signature(call.fn.fn).parameters  # the Python function under the decorator
        values = dict(zip(params, call.args))
        values.update(kwargs)
        sig, const = {}, {}
        for name, p in params.items():
            if "constexpr" in str(p.annotation):
                sig[name] = "constexpr"
                const[name] = values[name]
            else:
                sig[name] = _type_of(values[name])
        v = Variant(call.kernel, sig, const, warps)
        found.setdefault(v.key, v).launches += 1
    return list(found.values())


def _cuobjdump() -> str:
    import triton

    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")


def resource_usage(cubin: bytes) -> dict[str, int]:
    """REG / STACK / SHARED / LOCAL of the (single) function in a cubin."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        out = subprocess.run(
            [_cuobjdump(), "--dump-resource-usage", f.name], capture_output=True, text=True, check=True
        ).stdout
    m = re.search(r"REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)", out)
    return {k: int(v) for k, v in zip(("REG", "STACK", "SHARED", "LOCAL"), m.groups())} if m else {}


def compile_variants(
    variants: list[Variant], emitted: Emitted, arch: int = 90, num_stages: int = 3, progress=None
) -> list[Variant]:
    """Compile each variant for sm_<arch> (no GPU needed) and record its resource usage.

    The compiler runs in a child process without TRITON_INTERPRET: Triton fixes the mode of its
    own library functions when first imported, so one process cannot interpret and compile."""
    load_module(emitted)  # the source file the worker imports
    job = {
        "path": str(cache_dir() / f"pcc_kernels_{emitted.digest}.py"),
        "arch": arch,
        "num_stages": num_stages,
        "variants": [
            {"kernel": v.kernel, "signature": v.signature, "constexprs": v.constexprs, "num_warps": v.num_warps}
            for v in variants
        ],
    }
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pccompile.codegen.triton.aot"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    proc.stdin.write(json.dumps(job))
    proc.stdin.close()
    done = 0
    for line in proc.stdout:
        r = json.loads(line)
        v = variants[r["i"]]
        v.usage, v.error, v.compile_s = r["usage"], r["error"], r["compile_s"]
        done += 1
        if progress:
            progress(v)
    err = proc.stderr.read()
    if proc.wait() != 0 or done < len(variants):
        raise RuntimeError(f"the kernel compiler process failed: {err.strip()[-2000:]}")
    return variants


def _worker() -> None:
    """Child process: compile the variants described on stdin, one JSON line per result."""
    import importlib.util

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    job = json.loads(sys.stdin.read())
    spec = importlib.util.spec_from_file_location("pcc_kernels_aot", job["path"])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    target = GPUTarget("cuda", job["arch"], 32)
    for i, v in enumerate(job["variants"]):
        t0 = time.perf_counter()
        usage, error = {}, None
        try:
            src = ASTSource(getattr(module, v["kernel"]), v["signature"], constexprs=v["constexprs"])
            compiled = triton.compile(
                src, target=target, options={"num_warps": v["num_warps"], "num_stages": job["num_stages"]}
            )
            usage = resource_usage(compiled.asm["cubin"])
        except Exception as e:  # reported per variant: one failure must not hide the others
            lines = str(e).strip().splitlines()
            error = f"{type(e).__name__}: {lines[-1][:300] if lines else ''}"
        print(json.dumps({"i": i, "usage": usage, "error": error, "compile_s": time.perf_counter() - t0}), flush=True)


if __name__ == "__main__":
    _worker()
