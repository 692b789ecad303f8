"""pccompile: compile probabilistic circuits into fused kernels.

    import pccompile
    model = pccompile.compile("examples/mixture.pc")   # .pc path, DSL text, networkx graph, builder node
    lls = model(x)                                    # log p(x) per row; -1 / NaN entries are marginalised
"""

from pccompile.ir import (ArgumentError, Bernoulli, Categorical, Circuit, CircuitError, DataError, DSLSemanticError,
                          DSLSyntaxError, FormatError, Gaussian, PCError, Variable, verify)

from . import structures
from .builder import Vec, build, inputs, multiply, summate
from .compiler import CompileReport, compile, to_circuit
from .dsl import parse, parse_file, print_circuit
from .io import load, save
from .nx import from_networkx, to_networkx
from .flows import edge_flows
from .runtime import CompiledCircuit

__version__ = "0.1.0"

__all__ = ["structures", "edge_flows", "compile", "load", "save", "to_circuit", "CompileReport", "CompiledCircuit", "from_networkx",
           "to_networkx", "parse", "parse_file", "print_circuit", "inputs", "multiply", "summate", "build", "Vec",
           "Categorical", "Bernoulli", "Gaussian", "Circuit", "Variable", "verify", "PCError", "CircuitError",
           "DataError", "DSLSyntaxError", "DSLSemanticError", "FormatError", "ArgumentError", "__version__"]
