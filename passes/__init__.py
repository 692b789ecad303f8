"""pccompile.passes: circuit rewrites, analyses and lowering to a Program."""

import os

from pccompile.ir.verify_program import verify_program

from .base import Pass, PassContext, PassManager, parse_pipeline, register, registered
from .layer import LayerPlan, layer
from .normalize import Normalize
from .pack import PackOptions, pack, plan_partitions
from .simple import InitParams, Verify, random_sum_weights
from .vectorize import Vectorize


def lower(circuit, options: PackOptions | None = None, *, debug: bool | None = None):
    """Circuit -> Program: `layer` then `pack`; with `debug` (default: PCC_DEBUG=1 in the
    environment, as the test suite sets it) the Program is checked by `verify_program`."""
    program = pack(circuit, layer(circuit), options)
    if debug if debug is not None else os.environ.get("PCC_DEBUG") == "1":
        verify_program(program)
    return program


__all__ = [
    "Pass",
    "PassContext",
    "PassManager",
    "parse_pipeline",
    "register",
    "registered",
    "LayerPlan",
    "layer",
    "PackOptions",
    "pack",
    "plan_partitions",
    "lower",
    "Normalize",
    "InitParams",
    "Verify",
    "Vectorize",
    "random_sum_weights",
]
