"""networkx front end.

Format (a contract users and tests rely on): a `networkx.DiGraph`, edges parent -> child; node
attribute `type` in {"sum", "product", "input"}; input nodes carry `var` (int), `dist`
(a family of pccompile.ir.DISTRIBUTIONS) and `params` (categorical: list of probabilities;
bernoulli: [p]; binomial: [trials, p]; gaussian: [mean, std]; exponential: [rate];
lognormal: [mu, sigma]; poisson: [rate]; geometric: [p]; negative_binomial: [r, p];
gamma: [shape, rate]; laplace: [loc, scale]; beta: [alpha, beta]); sum edges carry `weight`; the root is the unique node
with no parent. Sum children are taken in sorted-key order when keys are sortable.
"""

from __future__ import annotations

import networkx as nx
import numpy as np

from pccompile.ir import (
    DISTRIBUTIONS,
    Circuit,
    CircuitError,
    CycleError,
    InputNode,
    ParameterError,
    ProductNode,
    ResourceError,
    StructureError,
    SumNode,
    Variable,
    infer_variables,
    verify,
)
from pccompile.ir.limits import MAX_VARIABLES


def _sorted(keys):
    keys = list(keys)
    try:
        return sorted(keys)
    except TypeError:
        return keys


def from_networkx(G: nx.DiGraph, variables: list[Variable] | None = None) -> Circuit:
    """A scalar Circuit (every node of size 1), verified as given; `compile` packs it into vectors
    with `vectorize`. Every error names the user's node key."""
    if isinstance(G, (nx.MultiDiGraph, nx.MultiGraph)):
        raise StructureError(
            None,
            "a multigraph has parallel edges, which a circuit cannot tell apart; "
            "pass a networkx.DiGraph (sum the weights of parallel edges)",
        )
    if not isinstance(G, nx.DiGraph):
        raise StructureError(None, f"expected a networkx.DiGraph, got {type(G).__name__}")
    roots = [n for n in G.nodes if G.in_degree(n) == 0]
    if len(roots) != 1:
        raise StructureError(
            None,
            f"the graph needs exactly one node without parents (the root), found "
            f"{len(roots)}: {_sorted(map(str, roots))[:5]}",
        )
    if not nx.is_directed_acyclic_graph(G):
        cyc = nx.find_cycle(G)
        raise CycleError(str(cyc[0][0]), "it lies on a cycle " + " -> ".join(str(e[0]) for e in cyc))
    order = list(nx.lexicographical_topological_sort(G, key=str))[::-1]  # children first
    ids = {key: k for k, key in enumerate(order)}
    names = _names(order)
    user = {names[key]: str(key) for key in order}
    try:
        nodes, params = _nodes(G, order, ids, names)
        if variables is None:
            variables = infer_variables((n.name, n.var, n.dist) for n in nodes.values() if isinstance(n, InputNode))
        circuit = Circuit(tuple(variables), nodes, ids[roots[0]], params, {})
        verify(circuit)
    except CircuitError as e:
        raise e.renamed(user.get(e.node, e.node)) from None
    return circuit


def _nodes(G, order, ids, names):
    """IR nodes and parameters of the graph's nodes, children first (errors name IR names)."""
    nodes, params = {}, {}
    for key in order:
        attrs = G.nodes[key]
        name, k = names[key], ids[key]
        kind = attrs.get("type")
        kids = _sorted(G.successors(key))
        if kind == "input":
            if kids:
                raise StructureError(name, "an input node cannot have children")
            dist, p = _input(name, attrs)
            var = int(attrs["var"])
            nodes[k] = InputNode(k, name, var, 1, dist)
            params[k] = p
        elif kind == "product":
            if not kids:
                raise StructureError(name, "a product node needs children")
            nodes[k] = ProductNode(k, name, tuple(ids[c] for c in kids), 1)
        elif kind == "sum":
            if not kids:
                raise StructureError(name, "a sum node needs children")
            w = np.array([_weight(G, key, c, name) for c in kids], dtype=np.float32)
            nodes[k] = SumNode(k, name, tuple(ids[c] for c in kids), 1)
            params[k] = {"weights": w.reshape(1, -1)}
        else:
            raise StructureError(name, f"node attribute 'type' must be 'sum', 'product' or 'input', got {kind!r}")
    return nodes, params


def _names(order) -> dict:
    """IR names for the graph's keys: the key itself when it is an identifier, else a sanitised
    form, made unique."""
    names, used = {}, set()
    for key in order:
        s = str(key)
        base = s if s.isidentifier() else "n_" + "".join(ch if ch.isalnum() else "_" for ch in s)
        name, k = base, 1
        while name in used:
            name, k = f"{base}_{k}", k + 1
        used.add(name)
        names[key] = name
    return names


def _weight(G, key, child, name: str) -> float:
    attrs = G.edges[key, child]
    if "weight" not in attrs:
        raise StructureError(
            name, f"every edge out of a sum node needs a 'weight' attribute (the edge to {str(child)!r} has none)"
        )
    w = attrs["weight"]
    if isinstance(w, (str, bytes, bool)) or w is None:
        raise ParameterError(name, f"the weight of the edge to {str(child)!r} must be a number, got {w!r}")
    try:
        return float(w)
    except (TypeError, ValueError, OverflowError):
        raise ParameterError(
            name, f"the weight of the edge to {str(child)!r} must be a number, got {type(w).__name__} {w!r}"
        ) from None


def _number_list(name: str, p) -> np.ndarray:
    if isinstance(p, (str, bytes)):
        raise ParameterError(name, f"'params' must be a list of numbers, got {p!r}")
    try:
        return np.asarray(p, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError, OverflowError):
        raise ParameterError(name, f"'params' must be a list of numbers, got {p!r}") from None


def _families() -> str:
    names = sorted(DISTRIBUTIONS)
    return ", ".join(names[:-1]) + " or " + names[-1]


def _input(name: str, attrs) -> tuple:
    dist = attrs.get("dist")
    var = attrs.get("var")
    if isinstance(var, bool) or not isinstance(var, (int, np.integer)) or var < 0:
        raise StructureError(name, f"an input node needs an integer attribute 'var' >= 0, got {var!r}")
    if var >= MAX_VARIABLES:
        raise StructureError(name, f"variable index {var:,} is beyond the limit of {MAX_VARIABLES:,} variables")
    if attrs.get("params") is None:
        raise StructureError(name, "an input node needs an attribute 'params'")
    if not isinstance(dist, str) or dist not in DISTRIBUTIONS:
        raise StructureError(name, f"input attribute 'dist' must be {_families()}, got {dist!r}")
    try:
        return DISTRIBUTIONS[dist].from_nx(name, _number_list(name, attrs["params"]))
    except ResourceError as e:
        raise StructureError(name, str(e)) from None


def to_networkx(circuit: Circuit) -> nx.DiGraph:
    """Expand node vectors into scalar nodes keyed 'name:row' ('name' when size 1). Tied
    parameters are copied (networkx has no notion of tying)."""
    G = nx.DiGraph()
    key = {}
    for nid, n in circuit.nodes.items():
        key[nid] = [n.name if n.size == 1 else f"{n.name}:{r}" for r in range(n.size)]
    for nid in circuit.reachable():
        n = circuit.nodes[nid]
        if isinstance(n, InputNode):
            p = circuit.params.get(nid)
            if p is None:
                raise CircuitError(n.name, "parameters must be initialised before export")
            for r in range(n.size):
                vals = n.dist.nx_values(p, r)
                G.add_node(key[nid][r], type="input", var=int(n.var), dist=n.dist.name, params=vals)
        elif isinstance(n, ProductNode):
            for r in range(n.size):
                G.add_node(key[nid][r], type="product")
                for k, c in enumerate(n.children):
                    G.add_edge(key[nid][r], key[c][int(n.child_rows(k)[r])])
        else:
            src = circuit.param_source(n)
            w = circuit.params.get(src.id, {}).get("weights")
            if w is None:
                raise CircuitError(n.name, "parameters must be initialised before export")
            cols = [key[c][r] for c in n.children for r in range(circuit.nodes[c].size)]
            mask = circuit.edge_mask(n)
            for r in range(n.size):
                G.add_node(key[nid][r], type="sum")
                for j, ck in enumerate(cols):
                    if mask[r, j]:
                        G.add_edge(key[nid][r], ck, weight=float(np.asarray(w)[r, j]))
    # Rows that masks or index arrays leave unused are not part of the distribution.
    root = key[circuit.root][0]
    keep = nx.descendants(G, root) | {root}
    return G.subgraph(keep).copy() if len(keep) < G.number_of_nodes() else G
