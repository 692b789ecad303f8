"""The torch backend: vectorised reference execution of a Program."""

from .executor import CircuitLogLikelihood, TorchExecutor
from .inputs import partition_log_probs

__all__ = ["CircuitLogLikelihood", "TorchExecutor", "partition_log_probs"]
