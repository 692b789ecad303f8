"""pccompile.passes: circuit rewrites, analyses and lowering to a Program."""

from .base import Pass, PassManager, parse_pipeline, register, registered
from .layer import LayerPlan, layer
from .normalize import Normalize
from .pack import PackOptions, pack, plan_partitions
from .simple import InitParams, Verify, random_sum_weights
from .vectorize import Vectorize


def lower(circuit, options: PackOptions | None = None):
    """Circuit -> Program: `layer` then `pack`."""
    return pack(circuit, layer(circuit), options)


__all__ = ["Pass", "PassManager", "parse_pipeline", "register", "registered", "LayerPlan", "layer",
           "PackOptions", "pack", "plan_partitions", "lower", "Normalize", "InitParams", "Verify",
           "Vectorize", "random_sum_weights"]
