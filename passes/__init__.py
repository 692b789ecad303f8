"""pccompile.passes: circuit rewrites, analyses and lowering to a Program."""

from pccompile.ir.env import env_value
from pccompile.ir.verify_program import verify_program

from .base import Pass, PassContext, PassManager, parse_pipeline, register, registered
from .grow import Grow
from .layer import LayerPlan, layer
from .normalize import Collapse, Normalize
from .pack import PackOptions, pack, plan_partitions
from .prune import Prune
from .simple import InitParams, Verify, random_sum_weights
from .trim import Trim
from .vectorize import Vectorize


def run(circuit, pipeline, *, data=None, trace=None, device=None, group=None):
    """Run a pipeline (text such as "prune{fraction=0.3},grow" or Pass objects) on a circuit.
    With `data`, analyses the passes need (edge flows for `prune`) are computed on it for the
    circuit each pass sees, in batches on `device`, by the driver's flow code; the passes get
    plain arrays and never launch kernels themselves. `group` (learn.distributed): the analyses
    are computed on each rank's shard of `data` and all-reduced."""
    passes = parse_pipeline(pipeline) if isinstance(pipeline, str) else list(pipeline)
    provider = None
    if data is not None:
        from pccompile.analysis import provider_for  # the driver layer: torch, only when asked

        provider = provider_for(data, device=device, group=group)
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
