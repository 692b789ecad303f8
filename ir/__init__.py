"""pccompile.ir: circuit IR (node vectors), verification, and the lowered Program."""

from .circuit import Circuit, Region, Variable, compact_ids, infer_variables, same_circuit
from .distributions import BINARY, COUNT, REAL, Distribution, Domain
from .errors import (
    ArgumentError,
    CircuitError,
    CycleError,
    DataError,
    DecomposabilityError,
    DistributedError,
    DomainError,
    DSLSemanticError,
    DSLSyntaxError,
    FormatError,
    ParameterError,
    PCError,
    ResourceError,
    SizeMismatchError,
    SmoothnessError,
    SourceError,
    StructureError,
)
from .families import (
    DISTRIBUTIONS,
    FAMILIES,
    Bernoulli,
    Beta,
    Binomial,
    Categorical,
    Exponential,
    Family,
    Gamma,
    Gaussian,
    Geometric,
    Laplace,
    LogNormal,
    NegativeBinomial,
    Poisson,
    family,
    make_distribution,
)
from .nodes import InputNode, Node, ProductNode, SumNode
from .program import (
    FIRST_ROW,
    ONE_ROW,
    ZERO_ROW,
    InputParamLayout,
    InputPartition,
    Layer,
    ProductPartition,
    Program,
    SumParamLayout,
    SumPartition,
)
from .verify import verify

__all__ = [name for name in dir() if not name.startswith("_")]
