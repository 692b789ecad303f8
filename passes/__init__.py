"""pccompile.passes: circuit rewrites, analyses and lowering to a Program."""

from pccompile.ir.env import env_value
from pccompile.ir.verify_program import verify_program

from .base import Pass, PassContext, PassManager, parse_pipeline, register, registered
from .grow import Grow
from .layer import LayerPlan, layer
from .marginalize import Condition, Integrate
from .multiply import log_inner_product, multiply, signed_integral, square, squared_distance
from .normalize import Collapse, Normalize
from .pack import PackOptions, pack, plan_partitions
from .prune import Prune
from .simple import InitParams, Verify, random_sum_weights
from .trim import Trim
from .vectorize import Vectorize


def run(circuit, pipeline, *, provider=None, trace=None):
    """Run a pipeline (text such as "prune{fraction=0.3},grow", a Pass, or Pass objects) on a
    circuit. `provider(name, circuit, pass)` computes the analyses the passes need (edge flows for `prune`)
    for the circuit each pass sees; the driver builds one from data
    (`pccompile.run_passes(..., data=x)`), so the passes get plain arrays and never launch
    kernels themselves."""
    if isinstance(pipeline, str):
        passes = parse_pipeline(pipeline)
    else:
        passes = [pipeline] if isinstance(pipeline, Pass) else list(pipeline)
    return PassManager(passes).run(circuit, trace, PassContext(provider=provider))


def lower(circuit, options: PackOptions | None = None, *, debug: bool | None = None):
    """Circuit -> Program: `layer` then `pack`; with `debug` (default: PCC_DEBUG=1 in the
    environment, as the test suite sets it) the Program is checked by `verify_program`."""
    program = pack(circuit, layer(circuit), options)
    if debug if debug is not None else env_value("PCC_DEBUG"):
        verify_program(program)
    return program


__all__ = [
    "Trim",
    "run",
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
