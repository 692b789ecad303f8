"""pccompile: compile probabilistic circuits into fused kernels.

    import pccompile
    model = pccompile.compile("examples/mixture.pc")   # .pc path, DSL text, networkx graph, builder node
    lls = model(x)                                    # log p(x) per row; -1 / NaN entries are marginalised

The package is a lazy facade (PEP 562): `import pccompile.ir` or `import pccompile.passes` loads
those layers alone (numpy, no torch, lark or networkx); a name below is imported on first use.
"""

from __future__ import annotations

import importlib

from .ir.families import FAMILIES  # numpy only: the input families' classes are exported below

__version__ = "0.1.0"

_EXPORTS = {
    "compile": "compiler",
    "to_circuit": "compiler",
    "run_passes": "compiler",
    "load_or_compile": "compiler",
    "CompileReport": "compiler",
    "load": "io.model_file",
    "save": "io.model_file",
    "parse": "dsl",
    "parse_file": "dsl",
    "print_circuit": "dsl",
    "from_networkx": "nx",
    "to_networkx": "nx",
    "inputs": "builder",
    "multiply": "builder",
    "summate": "builder",
    "build": "builder",
    "Vec": "builder",
    "edge_flows": "analysis.flows",
    "CompiledCircuit": "runtime.module",
    **{
        name: "ir"
        for name in (
            "ArgumentError",
            "Circuit",
            "CircuitError",
            "DataError",
            "DSLSemanticError",
            "DSLSyntaxError",
            "FormatError",
            "PCError",
            "ResourceError",
            "DistributedError",
            "Variable",
            "verify",
        )
    },
    **{cls.__name__: "ir.families" for cls in FAMILIES},  # every registered input family
}
_SUBMODULES = {name: name for name in ("structures", "learn", "datasets", "cli", "runtime", "analysis", "io")} | {
    "data": "io.data",
    "plots": "io.plots",
    "queries": "runtime.queries",
    "cuda_graphs": "runtime.cuda_graphs",
}
"""Modules the facade offers as attributes (pc.data: pccompile.io.data), imported on first use."""

__all__ = ["__version__", *_EXPORTS, "structures"]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"{__name__}.{_SUBMODULES[name]}")
    else:
        raise AttributeError(f"module 'pccompile' has no attribute '{name}'")
    globals()[name] = value  # later look-ups are plain attribute reads
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS) | set(_SUBMODULES))
