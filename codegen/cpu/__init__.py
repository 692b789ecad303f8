"""The CPU target: the fusion plan's product and sum partitions as C kernels with OpenMP."""

from .build import BuildError, build_error, kernel_source
from .executor import CpuExecutor
