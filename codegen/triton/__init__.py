"""The Triton backend: emitted, fused kernels (runs on CPU under TRITON_INTERPRET=1 for tests)."""

from .emitter import Emitted, IndentedBuffer, TritonOptions, emit
from .executor import TritonExecutor, cache_dir, load_module

__all__ = ["Emitted", "IndentedBuffer", "TritonOptions", "emit", "TritonExecutor", "cache_dir", "load_module"]
