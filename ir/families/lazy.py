"""torch for the families' kernel parts, imported on first use.

A family keeps its IR description and its kernels in one module, and `import pccompile.ir`
must still load numpy only (the passes and the DSL never touch a tensor). The kernel parts run
only inside the runtime, which has imported torch already; there the first attribute read
imports the module and stores it, so later reads are plain attribute lookups."""

from __future__ import annotations

import importlib
from typing import Any


class LazyModule:
    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str):
        value = getattr(importlib.import_module(self._name), attr)
        setattr(self, attr, value)
        return value


torch: Any = LazyModule("torch")
F: Any = LazyModule("torch.nn.functional")
