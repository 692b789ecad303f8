"""networkx front end.

Format (a contract users and tests rely on): a `networkx.DiGraph`, edges parent -> child; node
attribute `type` in {"sum", "product", "input"}; input nodes carry `var` (int), `dist`
("categorical" | "bernoulli" | "gaussian") and `params` (categorical: list of probabilities;
bernoulli: [p]; gaussian: [mean, std]); sum edges carry `weight`; the root is the unique node
with no parent. Sum children are taken in sorted-key order when keys are sortable.
"""

from __future__ import annotations

import networkx as nx
import numpy as np

from pccompile.ir import (Bernoulli, Categorical, Circuit, CircuitError, Gaussian, InputNode, ProductNode, StructureError,
                          SumNode, Variable)
from pccompile.ir.distributions import Domain


def _sorted(keys):
    keys = list(keys)
    try:
        return sorted(keys)
    except TypeError:
        return keys


def from_networkx(G: nx.DiGraph, variables: list[Variable] | None = None) -> Circuit:
    """A scalar Circuit (every node of size 1); `compile` packs it into vectors with `vectorize`."""
    if not isinstance(G, nx.DiGraph):
        raise StructureError(None, f"expected a networkx.DiGraph, got {type(G).__name__}")
    roots = [n for n in G.nodes if G.in_degree(n) == 0]
    if len(roots) != 1:
        raise StructureError(None, f"the graph needs exactly one node without parents (the root), found "
                                   f"{len(roots)}: {_sorted(map(str, roots))[:5]}")
    if not nx.is_directed_acyclic_graph(G):
        from pccompile.ir import CycleError
        cyc = nx.find_cycle(G)
        raise CycleError(str(cyc[0][0]), "it lies on a cycle " + " -> ".join(str(e[0]) for e in cyc))
    order = list(nx.lexicographical_topological_sort(G, key=str))[::-1]  # children first
    ids = {key: k for k, key in enumerate(order)}
    nodes, params = {}, {}
    domains: dict[int, Domain] = {}
    for key in order:
        attrs = G.nodes[key]
        name = _name(key)
        kind = attrs.get("type")
        k = ids[key]
        kids = _sorted(G.successors(key))
        if kind == "input":
            if kids:
                raise StructureError(name, "an input node cannot have children")
            dist, p = _input(name, attrs)
            var = attrs["var"]
            nodes[k] = InputNode(k, name, var, 1, dist)
            params[k] = p
            d = dist.domain()
            if var in domains and domains[var] != d:
                raise StructureError(name, f"variable {var} is used with domains {domains[var].describe()} "
                                           f"and {d.describe()}")
            domains[var] = d
        elif kind == "product":
            if not kids:
                raise StructureError(name, "a product node needs children")
            nodes[k] = ProductNode(k, name, tuple(ids[c] for c in kids), 1)
        elif kind == "sum":
            if not kids:
                raise StructureError(name, "a sum node needs children")
            try:
                w = np.array([float(G.edges[key, c]["weight"]) for c in kids], dtype=np.float32)
            except KeyError:
                raise StructureError(name, "every edge out of a sum node needs a 'weight' attribute") from None
            nodes[k] = SumNode(k, name, tuple(ids[c] for c in kids), 1)
            params[k] = {"weights": w.reshape(1, -1)}
        else:
            raise StructureError(name, f"node attribute 'type' must be 'sum', 'product' or 'input', got {kind!r}")
    if variables is None:
        n = max(domains) + 1 if domains else 0
        variables = [Variable(f"x{i}", domains.get(i, Domain(2))) for i in range(n)]
    return Circuit(tuple(variables), nodes, ids[roots[0]], params, {})


def _name(key) -> str:
    s = str(key)
    return s if s.isidentifier() else "n_" + "".join(ch if ch.isalnum() else "_" for ch in s)


def _input(name: str, attrs) -> tuple:
    dist = attrs.get("dist")
    if "var" not in attrs or not isinstance(attrs["var"], (int, np.integer)) or attrs["var"] < 0:
        raise StructureError(name, "an input node needs an integer attribute 'var' >= 0")
    p = attrs.get("params")
    if p is None:
        raise StructureError(name, "an input node needs an attribute 'params'")
    p = np.asarray(p, dtype=np.float32).reshape(-1)
    if dist == "categorical":
        if p.size < 2:
            raise StructureError(name, "categorical params need at least 2 probabilities")
        return Categorical(int(p.size)), {"probs": p.reshape(1, -1)}
    if dist == "bernoulli":
        if p.size != 1:
            raise StructureError(name, f"bernoulli params are [p], got {p.tolist()}")
        return Bernoulli(), {"p": p}
    if dist == "gaussian":
        if p.size != 2:
            raise StructureError(name, f"gaussian params are [mean, std], got {p.tolist()}")
        return Gaussian(), {"mean": p[:1], "std": p[1:]}
    raise StructureError(name, f"input attribute 'dist' must be categorical, bernoulli or gaussian, got {dist!r}")


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
                if n.dist.name == "categorical":
                    vals = np.asarray(p["probs"])[r].tolist()
                elif n.dist.name == "bernoulli":
                    vals = [float(np.asarray(p["p"])[r])]
                else:
                    vals = [float(np.asarray(p["mean"])[r]), float(np.asarray(p["std"])[r])]
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
