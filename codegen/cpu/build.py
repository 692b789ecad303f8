"""Building the CPU target's kernels: a C compiler turns kernels/*.c, joined into one source, into a shared library, loaded
with ctypes, cached on disk under a key of the source, the compiler and the flags.

The library takes raw pointers, so it needs no torch headers: a build takes about a second
instead of the minute a torch extension takes, and a machine without a compiler is told why once
(`build_error`) and runs the torch backend instead.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

from pccompile.ir.env import env_value

FLAGS = ("-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-ffp-contract=fast", "-shared", "-fPIC", "-std=c11")

_i64, _f32p, _i64p, _u8p = ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p
_CHILDREN = [_i64, _i64, _i64p, _i64p, _i64, _i64, _i64p, _i64p]  # K, F, comp, nf, Kb, Fb, comp_b, nf_b
_WEIGHT_FLOWS = [_i64p, _i64, _i64, ctypes.c_int, _f32p, ctypes.c_int]  # ids, base, pad, unique, grad; threads
_GROUP_WEIGHTS = [_f32p, _i64p]  # the log-weights and each group's offset in them
SIGNATURES = {
    "pc_sum_forward": [_f32p, _i64, _i64, _i64, *_CHILDREN, _i64p, *_GROUP_WEIGHTS, ctypes.c_float, ctypes.c_int],
    "pc_sum_backward": [_f32p, _f32p, _i64, _i64, _i64, *_CHILDREN, _i64p, *_GROUP_WEIGHTS, ctypes.c_float]
    + [_u8p, _u8p, _i64p, _i64, ctypes.c_int, _f32p, ctypes.c_int],  # first, first_b; ids, pad, unique, grad; threads
    "pc_sparse_forward": [_f32p, _i64, _i64, _i64, _i64, _i64, _i64p, _i64p, _i64p]
    + [_i64p] * 6
    + [_f32p, _f32p, ctypes.c_float, ctypes.c_int],
    "pc_sparse_backward": [_f32p, _f32p, _i64, _i64, _i64, _i64, _i64, _i64p, _i64p, _i64p]
    + [_i64p] * 6
    + [_f32p, _f32p, _i64, _i64, ctypes.c_float, _u8p]
    + _WEIGHT_FLOWS,
    "pc_run_codes": [_i64p, _i64p, _i64, _i64, _i64, _i64p, _i64, ctypes.c_int],
    "pc_table_inputs": [_f32p, _i64, _i64, _i64p, _i64, _f32p, _i64p, ctypes.c_int],
    "pc_table_counts": [_f32p, _f32p, _i64, _i64, _i64p, _i64, _i64p, ctypes.c_int],
    "pc_categorical_m_step": [_f32p, _i64, _i64, _f32p, _i64, _f32p, ctypes.c_float, ctypes.c_float, ctypes.c_int],
    "pc_categorical_em": [_f32p, _f32p, _i64, _i64, _i64p, _i64, _i64p, ctypes.c_float, ctypes.c_float, ctypes.c_int],
    "pc_sum_m_step": [_f32p, _f32p, _f32p, _i64p, _i64, ctypes.c_float, ctypes.c_float, ctypes.c_int],
    "pc_product_forward": [_f32p, _i64, _i64, _i64, _i64p, _i64p, ctypes.c_int],
    "pc_product_backward": [_f32p, _i64, _i64, _i64, _i64p, _i64p, _u8p, ctypes.c_int],
    "pc_signed_sum_forward": [_f32p, _f32p, _i64, _i64, _i64, _i64, _i64p, _i64p, _f32p, ctypes.c_int],
    "pc_signed_product_forward": [_f32p, _f32p, _i64, _i64, _i64, _i64p, _i64p, ctypes.c_int],
}


class BuildError(RuntimeError):
    """The kernels could not be built here (no compiler, or it failed): the message says which."""


# The kernels' source files, in the order they are joined into one translation unit: the tiles'
# vector types and exp/log, then the sum and product partitions (forward, then backward), which the
# input, sparse and signed kernels build on.
KERNEL_FILES = ("common.c", "sums.c", "backward.c", "inputs.c", "sparse.c", "signed.c")


def kernel_source() -> str:
    """The C source of the CPU target's kernels, its files joined (what `pcc emit --target cpu`
    prints first)."""
    folder = resources.files(__package__).joinpath("kernels")
    return "\n".join(folder.joinpath(name).read_text() for name in KERNEL_FILES)


def compiler() -> str | None:
    """The C compiler: $CC if set, else the first of cc, gcc, clang on the PATH."""
    if os.environ.get("CC"):
        return shutil.which(os.environ["CC"])
    return next((p for p in map(shutil.which, ("cc", "gcc", "clang")) if p), None)


def _cache_dir() -> Path:
    return Path(env_value("PCCOMPILE_CACHE") or Path.home() / ".cache" / "pccompile") / "cpu"


def _key(cc: str, source: str) -> str:
    """The build's key: the source, the compiler's version, the flags and the machine (flags say
    -march=native, so a library built for one CPU is not reused on another)."""
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60).stdout
    cpu = ""
    with_info = Path("/proc/cpuinfo")
    if with_info.exists():
        cpu = next((ln for ln in with_info.read_text().splitlines() if ln.startswith("flags")), "")
    text = "\0".join([source, version, " ".join(FLAGS), platform.machine(), cpu])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


@functools.lru_cache(maxsize=1)
def load_library() -> ctypes.CDLL:
    """The built kernels (built on first use, then read from the cache). Raises BuildError."""
    return build_library(kernel_source())


def build_library(source: str) -> ctypes.CDLL:
    """Kernels built from `source` (the cache's library when one has its key), with every
    kernel's signature set. Raises BuildError. Benchmarks load an older version's source this
    way to time it beside the current one in one process."""
    cc = compiler()
    if cc is None:
        raise BuildError("no C compiler found (cc, gcc or clang on the PATH, or $CC)")
    path = _cache_dir() / f"kernels-{_key(cc, source)}.so"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            src, out = Path(tmp) / "kernels.c", Path(tmp) / "kernels.so"
            src.write_text(source)
            run = subprocess.run([cc, *FLAGS, str(src), "-o", str(out), "-lm"], capture_output=True, text=True)
            if run.returncode != 0:
                first = (run.stderr.strip().splitlines() or ["no message"])[0]
                raise BuildError(f"{Path(cc).name} failed to build the CPU kernels: {first}")
            os.replace(out, path)  # atomic: a concurrent build never sees half a library
    lib = ctypes.CDLL(str(path))
    for name, args in SIGNATURES.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, None
    return lib


@functools.lru_cache(maxsize=1)
def build_error() -> str | None:
    """Why the CPU kernels cannot run here, or None when they build (the result is cached)."""
    try:
        load_library()
    except (BuildError, OSError, subprocess.SubprocessError) as e:
        return str(e)
    return None
