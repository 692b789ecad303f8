"""The torch backend: vectorised reference execution of a Program."""

from ..layers.inputs import partition_log_probs
from .executor import CircuitLogLikelihood, TorchExecutor

__all__ = ["CircuitLogLikelihood", "TorchExecutor", "partition_log_probs"]
