"""The circuit graph: variables, node vectors in topological order, a root, and parameters."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from .distributions import Distribution, Domain
from .errors import DomainError, StructureError
from .nodes import InputNode, Node, ProductNode, SumNode, same_structure


@dataclass(frozen=True)
class Variable:
    name: str
    domain: Domain


@dataclass(frozen=True)
class Region:
    """What a node vector stands for in its structure: the latent variable of a region, whose
    states are the vector's rows. `variables` are the circuit variables the latent belongs to
    (an HCLT's Z_v and an HMM's Z_t: their own variable; a PD or RAT-SPN region: its scope)."""

    name: str
    variables: tuple[int, ...]


@dataclass(frozen=True, eq=False)
class Circuit:
    """A DAG of node vectors. `nodes` is ordered children-before-parents; `params[id]` holds the
    parameter arrays of node `id` (absent when not yet initialised; tied sums have none).
    `meta` carries user metadata such as an image shape for sample grids; `regions[id]` names
    the latent a node vector stands for (set by the structure templates, kept by the passes)."""

    variables: tuple[Variable, ...]
    nodes: Mapping[int, Node]
    root: int
    params: Mapping[int, Mapping[str, np.ndarray]] = field(default_factory=dict)
    meta: Mapping[str, object] = field(default_factory=dict)
    regions: Mapping[int, Region] = field(default_factory=dict)

    # -- basic queries -------------------------------------------------------------------
    @property
    def num_vars(self) -> int:
        return len(self.variables)

    def node(self, node_id: int) -> Node:
        return self.nodes[node_id]

    def by_name(self, name: str) -> Node:
        for n in self.nodes.values():
            if n.name == name:
                return n
        raise KeyError(name)

    def child_size(self, node: Node) -> int:
        return sum(self.nodes[c].size for c in node.children)

    def param_source(self, node: SumNode) -> SumNode:
        """The sum node whose parameters `node` uses (itself unless tied)."""
        seen = set()
        while node.tie is not None:
            if node.id in seen:
                raise StructureError(node.name, "tie chain loops back on itself")
            seen.add(node.id)
            node = cast(SumNode, self.nodes[node.tie])  # verify: a tie names a sum node
        return node

    def edge_mask(self, node: SumNode) -> np.ndarray:
        if node.mask is not None:
            return np.asarray(node.mask, dtype=bool)
        return np.ones((node.size, self.child_size(node)), dtype=bool)

    def reachable(self) -> list[int]:
        """Ids reachable from the root, in the circuit's topological order."""
        keep, stack = set(), [self.root]
        while stack:
            i = stack.pop()
            if i in keep:
                continue
            keep.add(i)
            stack.extend(self.nodes[i].children)
            node = self.nodes[i]
            if isinstance(node, SumNode) and node.tie is not None:
                stack.append(node.tie)
        return [i for i in self.nodes if i in keep]

    def scopes(self) -> dict[int, frozenset[int]]:
        out: dict[int, frozenset[int]] = {}
        for i, n in self.nodes.items():
            if isinstance(n, InputNode):
                out[i] = frozenset((n.var,))
            else:
                out[i] = frozenset().union(*(out[c] for c in n.children))
        return out

    def depths(self) -> dict[int, int]:
        """Topological depth: inputs 0, any other node 1 + its deepest child."""
        out: dict[int, int] = {}
        for i, n in self.nodes.items():
            out[i] = 0 if isinstance(n, InputNode) else 1 + max(out[c] for c in n.children)
        return out

    # -- statistics ----------------------------------------------------------------------
    def stats(self) -> dict[str, int]:
        n_nodes = sum(n.size for n in self.nodes.values())
        sum_edges = prod_edges = n_params = 0
        for n in self.nodes.values():
            if isinstance(n, SumNode):
                edges = int(self.edge_mask(n).sum())
                sum_edges += edges
                if n.tie is None:
                    n_params += edges
            elif isinstance(n, ProductNode):
                prod_edges += n.size * len(n.children)
            else:
                n_params += sum(int(np.prod(s)) for s in n.dist.param_shapes(n.size).values())
        depth = self.depths()[self.root]
        return {
            "variables": self.num_vars,
            "node vectors": len(self.nodes),
            "nodes": n_nodes,
            "sum edges": sum_edges,
            "product edges": prod_edges,
            "parameters": n_params,
            "depth": depth,
        }

    # -- regions -------------------------------------------------------------------------
    def latent(self, region: str | tuple[int, ...]) -> int:
        """The id of the node vector that is the latent of a region, given by name or by its
        variables; KeyError when no node vector is."""
        for nid, r in self.regions.items():
            if r.name == region or (not isinstance(region, str) and r.variables == tuple(region)):
                return nid
        raise KeyError(region)

    # -- rebuilding ----------------------------------------------------------------------
    def replace(self, **changes) -> "Circuit":
        """A copy with some fields changed; region annotations of nodes no longer present go."""
        fields: dict[str, Any] = dict(
            variables=self.variables,
            nodes=self.nodes,
            root=self.root,
            params=self.params,
            meta=self.meta,
            regions=self.regions,
        )
        fields.update(changes)
        nodes = fields["nodes"]
        fields["regions"] = {k: r for k, r in fields["regions"].items() if k in nodes}
        return Circuit(**fields)

    def with_params(self, params: Mapping[int, Mapping[str, np.ndarray]]) -> "Circuit":
        return self.replace(params=dict(params))

    def __repr__(self) -> str:
        s = self.stats()
        return (
            f"Circuit(vars={s['variables']}, node_vectors={s['node vectors']}, nodes={s['nodes']}, "
            f"sum_edges={s['sum edges']}, root={self.nodes[self.root].name!r})"
        )


def same_circuit(a: Circuit, b: Circuit, *, params: bool = True, rtol: float = 0.0) -> bool:
    """Structural (and optionally parameter) equality, for round-trip tests and caches."""
    if a.variables != b.variables or a.root != b.root or list(a.nodes) != list(b.nodes):
        return False
    if dict(a.meta) != dict(b.meta):
        return False
    if not all(same_structure(a.nodes[i], b.nodes[i]) for i in a.nodes):
        return False
    if not params:
        return True
    if set(a.params) != set(b.params):
        return False
    for i, pa in a.params.items():
        pb = b.params[i]
        if set(pa) != set(pb):
            return False
        for k in pa:
            x, y = np.asarray(pa[k]), np.asarray(pb[k])
            if x.shape != y.shape or not np.allclose(x, y, rtol=rtol, atol=0.0):
                return False
    return True


def compact_ids(circuit: Circuit) -> Circuit:
    """Renumber node ids 0..N-1 in the circuit's order (after passes removed nodes)."""
    remap = {old: new for new, old in enumerate(circuit.nodes)}
    nodes = {}
    for old, n in circuit.nodes.items():
        changes: dict[str, Any] = {"id": remap[old]}
        if not isinstance(n, InputNode):
            changes["children"] = tuple(remap[c] for c in n.children)
        if isinstance(n, SumNode) and n.tie is not None:
            changes["tie"] = remap[n.tie]
        nodes[remap[old]] = dataclasses.replace(n, **changes)
    params = {remap[k]: v for k, v in circuit.params.items() if k in remap}
    regions = {remap[k]: r for k, r in circuit.regions.items() if k in remap}
    return circuit.replace(nodes=nodes, root=remap[circuit.root], params=params, regions=regions)


def infer_variables(inputs: Iterable[tuple[str, int, Distribution]], count: int | None = None) -> tuple[Variable, ...]:
    """Variables x0.. with the domains their input nodes imply, from (node name, variable,
    distribution) triples; `count` variables (default: up to the largest index used); unused
    ones binary. One variable read as two domains is a DomainError naming the node."""
    domains: dict[int, Domain] = {}
    for name, var, dist in inputs:
        d = dist.domain()
        if var in domains and domains[var] != d:
            raise DomainError(name, f"variable {var} is used as {domains[var].describe()} and as {d.describe()}")
        domains[var] = d
    n = (max(domains) + 1 if domains else 0) if count is None else count
    return tuple(Variable(f"x{i}", domains.get(i, Domain(2))) for i in range(n))
