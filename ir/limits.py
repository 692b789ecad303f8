"""Sizes pccompile accepts: documented caps, checked up front by every front end.

A few lines of input must neither exhaust memory nor run for minutes, so a size that cannot be
honoured is refused with the size asked for and the limit, before anything is allocated. The
caps are far above every published PC (MNIST HCLTs have 784 variables, 256 categories and up
to 4,096 latents); the memory check compares the parameter count against the smallest memory
limit that applies to the process (physical RAM, ulimit, cgroup) and names the one that binds.
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
MAX_EPOCHS = 1_000_000  # epochs of one training run (or of one learner's round)
MAX_ROUNDS = 10_000  # rounds of prune-grow or compression (the papers run a handful)
BYTES_PER_PARAMETER = 16  # float32 parameter, its gradient or EM statistic, and two staging copies


def check_limit(what: str, value: int, limit: int) -> None:
    """Refuse `value` above `limit`, naming what was asked for."""
    if value > limit:
        raise ResourceError(f"{what} {value:,} is beyond the limit of {limit:,}")


def memory_limits() -> list[tuple[int, str]]:
    """(bytes this process may still take, where the limit comes from) for every limit that
    applies: physical memory, the address-space and data limits (ulimit -v, -d) less what the
    process already maps, and its cgroup's limit (v2 or v1) less what the cgroup uses."""
    found = []
    try:
        found.append((os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "physical memory"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        found.append((1 << 34, "an assumed 16 GiB (physical memory unknown)"))
    mapped = _mapped_bytes()
    try:
        import resource

        for which, name in (
            (resource.RLIMIT_AS, "RLIMIT_AS, ulimit -v"),
            (resource.RLIMIT_DATA, "RLIMIT_DATA, ulimit -d"),
        ):
            soft = resource.getrlimit(which)[0]
            if soft != resource.RLIM_INFINITY:
                found.append((max(soft - mapped, 0), f"the process limit {name}"))
    except (ImportError, OSError, ValueError):  # pragma: no cover - non-POSIX
        pass
    cgroup = _cgroup_headroom()
    if cgroup is not None:
        found.append(cgroup)
    return found


def _mapped_bytes() -> int:
    """The process's virtual size (what RLIMIT_AS counts), 0 where /proc cannot tell."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):  # pragma: no cover - non-Linux
        return 0


def _cgroup_headroom(root: str = "/sys/fs/cgroup") -> tuple[int, str] | None:
    """The cgroup's memory limit less its usage: v2 (memory.max, memory.current) or v1
    (memory/memory.limit_in_bytes, usage_in_bytes), at the process's own cgroup or the mount's."""
    own = {}
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                for c in controllers.split(",") if controllers else [""]:
                    own[c] = path.lstrip("/")
    except (OSError, ValueError):
        pass
    candidates = [
        ("cgroup v2 memory.max", os.path.join(root, own.get("", "")), "memory.max", "memory.current"),
        ("cgroup v2 memory.max", root, "memory.max", "memory.current"),
        (
            "cgroup v1 memory.limit_in_bytes",
            os.path.join(root, "memory", own.get("memory", "")),
            "memory.limit_in_bytes",
            "memory.usage_in_bytes",
        ),
        (
            "cgroup v1 memory.limit_in_bytes",
            os.path.join(root, "memory"),
            "memory.limit_in_bytes",
            "memory.usage_in_bytes",
        ),
    ]
    for name, folder, limit_file, usage_file in candidates:
        limit = _read_int(os.path.join(folder, limit_file))
        if limit is None:
            continue
        if limit >= 1 << 60:  # "max", or v1's page-rounded 2**63: no limit
            return None
        return max(limit - (_read_int(os.path.join(folder, usage_file)) or 0), 0), f"the {name}"
    return None


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    if text == "max":
        return 1 << 62
    return int(text) if text.isdigit() else None


def memory_budget() -> tuple[int, str]:
    """(bytes the size checks allow, which limit binds): PCC_MEMORY_LIMIT when set, otherwise
    the smallest of memory_limits()."""
    from .env import env_value

    override = env_value("PCC_MEMORY_LIMIT")
    if override is not None:
        return override, "PCC_MEMORY_LIMIT"
    return min(memory_limits(), key=lambda limit: limit[0])


def memory_bytes() -> int:
    """The bytes the size checks allow (see memory_budget)."""
    return memory_budget()[0]


def parameter_count(circuit, scale=None) -> int:
    """The circuit's parameters (input tables and untied sum weights); `scale(node)` multiplies a
    node's count, for a pass that states what it will build before building it."""
    from .nodes import InputNode, SumNode

    total = 0
    for node in circuit.nodes.values():
        if isinstance(node, InputNode):
            count = node.size * (node.dist.num_cats or 2)
        elif isinstance(node, SumNode) and node.tie is None:
            count = node.size * sum(circuit.nodes[c].size for c in node.children if c in circuit.nodes)
        else:
            continue
        total += count * (scale(node) if scale is not None else 1)
    return total


def check_memory(parameters: int, budget: int | None = None, what: str = "the circuit") -> None:
    """Refuse a circuit whose parameters alone would not fit in memory, naming the binding limit."""
    budget, source = memory_budget() if budget is None else (budget, "the given budget")
    need = parameters * BYTES_PER_PARAMETER
    if need > budget:
        hint = "" if source == "PCC_MEMORY_LIMIT" else " (set PCC_MEMORY_LIMIT to change the limit)"
        raise ResourceError(
            f"{what} has {parameters:,} parameters, which need about {need / 2**30:,.1f} GiB; "
            f"{budget / 2**30:,.1f} GiB are allowed by {source}{hint}"
        )


def check_circuit(circuit) -> None:
    """Refuse a circuit beyond the caps or memory, before anything is computed over it."""
    from .nodes import InputNode

    check_limit("variables:", circuit.num_vars, MAX_VARIABLES)
    check_limit("node vectors:", len(circuit.nodes), MAX_NODE_VECTORS)
    for node in circuit.nodes.values():
        if not isinstance(node.size, int):
            raise ResourceError(f"node '{node.name}' has a size of type {type(node.size).__name__}, not int")
        check_limit(f"node '{node.name}' has size", node.size, MAX_VECTOR_SIZE)
        if isinstance(node, InputNode):
            cats = node.dist.num_cats or 2
            check_limit(f"node '{node.name}' has categories:", cats, MAX_CATEGORIES)
    for v in circuit.variables:
        if v.domain.num_cats is not None:
            check_limit(f"variable '{v.name}' has categories:", v.domain.num_cats, MAX_CATEGORIES)
    check_memory(parameter_count(circuit))
