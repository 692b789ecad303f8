"""The runtime: a compiled circuit as a torch module (`CompiledCircuit`), its parameters
(`params`), batch encoding (`batch`), the queries it answers (`queries`) and CUDA-graph capture
(`cuda_graphs`)."""

from .module import CompiledCircuit

__all__ = ["CompiledCircuit"]
