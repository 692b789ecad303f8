"""Sizes pccompile accepts: documented caps, checked up front by every front end.

A few lines of input must neither exhaust memory nor run for minutes, so a size that cannot be
honoured is refused with the size asked for and the limit, before anything is allocated. The
caps are far above every published PC (MNIST HCLTs have 784 variables, 256 categories and up
to 4,096 latents); the memory check compares the parameter count against this machine's memory.
"""

from __future__ import annotations

import os

from .errors import ResourceError

MAX_VARIABLES = 1 << 15  # variables a circuit declares (32,768: a 3x64x64 image is 12,288)
MAX_CATEGORIES = 1 << 16  # categories of one discrete variable (a 65,536-word vocabulary)
MAX_VECTOR_SIZE = 1 << 16  # nodes in one node vector (latents; an outer product's rows)
MAX_NODE_VECTORS = 1 << 20  # node vectors in a circuit
MAX_HCLT_VARIABLES = 4096  # variables of one Chow-Liu tree (mutual information is quadratic in them)
MAX_NESTING = 64  # depth of nested lists in a .pc file
BYTES_PER_PARAMETER = 16  # float32 parameter, its gradient or EM statistic, and two staging copies


def check_limit(what: str, value: int, limit: int) -> None:
    """Refuse `value` above `limit`, naming what was asked for."""
    if value > limit:
        raise ResourceError(f"{what} {value:,} is beyond the limit of {limit:,}")


def memory_bytes() -> int:
    """This machine's memory (PCC_MEMORY_LIMIT overrides it, in bytes)."""
    env = os.environ.get("PCC_MEMORY_LIMIT")
    if env:
        return int(env)
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 1 << 34


def check_memory(parameters: int, budget: int | None = None) -> None:
    """Refuse a circuit whose parameters alone would not fit in memory."""
    budget = memory_bytes() if budget is None else budget
    need = parameters * BYTES_PER_PARAMETER
    if need > budget:
        raise ResourceError(
            f"the circuit has {parameters:,} parameters, which need about {need / 2**30:,.1f} GiB; "
            f"this machine has {budget / 2**30:,.1f} GiB (set PCC_MEMORY_LIMIT to change the limit)"
        )


def check_circuit(circuit) -> None:
    """Refuse a circuit beyond the caps or memory, before anything is computed over it."""
    from .nodes import InputNode, SumNode

    check_limit("variables:", circuit.num_vars, MAX_VARIABLES)
    check_limit("node vectors:", len(circuit.nodes), MAX_NODE_VECTORS)
    parameters = 0
    for node in circuit.nodes.values():
        if not isinstance(node.size, int):
            raise ResourceError(f"node '{node.name}' has a size of type {type(node.size).__name__}, not int")
        check_limit(f"node '{node.name}' has size", node.size, MAX_VECTOR_SIZE)
        if isinstance(node, InputNode):
            cats = node.dist.num_cats or 2
            check_limit(f"node '{node.name}' has categories:", cats, MAX_CATEGORIES)
            parameters += node.size * cats
        elif isinstance(node, SumNode) and node.tie is None:
            parameters += node.size * sum(circuit.nodes[c].size for c in node.children if c in circuit.nodes)
    for v in circuit.variables:
        if v.domain.num_cats is not None:
            check_limit(f"variable '{v.name}' has categories:", v.domain.num_cats, MAX_CATEGORIES)
    check_memory(parameters)
