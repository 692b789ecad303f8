"""Test helpers: random circuits, an independent reference evaluator, and the check that a DSL
error stands where it should.

The reference evaluator implements the meaning of the IR directly (linear space, float64, one
node vector at a time) and shares no code with lowering or the backends."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from pccompile.ir import Binomial, Circuit, Domain, InputNode, ProductNode, SourceError, Variable

import pccompile as pc


def random_circuit(
    rng: np.random.Generator,
    num_vars: int = 4,
    *,
    max_cats: int = 3,
    gaussian: bool = False,
    sparse: bool = True,
    tie: bool = True,
    outer: bool = True,
    max_size: int = 3,
    binomial: bool = False,
) -> Circuit:
    """A random smooth, decomposable circuit over `num_vars` variables using every IR feature:
    mixed input families, masks, ties, index (outer) products and skip connections."""
    cats = [int(rng.integers(2, max_cats + 1)) for _ in range(num_vars)]
    real = set()
    if gaussian:
        real = {int(rng.integers(num_vars))}
    tied_pool: dict[tuple, pc.Vec] = {}

    def leaf(v: int, size: int) -> pc.Vec:
        if v in real:
            return pc.inputs(v, size, pc.Gaussian())
        if cats[v] == 2 and rng.random() < 0.5:
            return pc.inputs(v, size, pc.Bernoulli())
        if binomial and rng.random() < 0.6:  # binomial(n) over a variable of n + 1 categories
            return pc.inputs(v, size, Binomial(cats[v] - 1))
        return pc.inputs(v, size, pc.Categorical(cats[v]))

    def region(vs: list[int], size: int, depth: int) -> pc.Vec:
        if len(vs) == 1:
            if rng.random() < 0.4:  # a mixture of two leaf vectors
                a, b = leaf(vs[0], int(rng.integers(1, max_size + 1))), leaf(vs[0], int(rng.integers(1, max_size + 1)))
                return pc.summate(a, b, size=size)
            return leaf(vs[0], size)
        kids = []
        for _ in range(int(rng.integers(1, 3))):
            cut = int(rng.integers(1, len(vs)))
            perm = list(rng.permutation(vs))
            left, right = sorted(perm[:cut]), sorted(perm[cut:])
            if outer and rng.random() < 0.3:
                k1, k2 = int(rng.integers(1, max_size + 1)), int(rng.integers(1, max_size + 1))
                a, b = region(left, k1, depth + 1), region(right, k2, depth + 1)
                ia, ib = np.repeat(np.arange(k1), k2), np.tile(np.arange(k2), k1)
                kids.append(pc.multiply(a, b, index=(ia, ib)))
            else:
                k = int(rng.integers(1, max_size + 1))
                kids.append(pc.multiply(region(left, k, depth + 1), region(right, k, depth + 1)))
        width = sum(k.size for k in kids)
        key = (tuple(vs), size, tuple(k.size for k in kids))
        if tie and key in tied_pool and rng.random() < 0.5:
            src = tied_pool[key]
            if [c.size for c in src.children] == [k.size for k in kids]:
                return pc.summate(*kids, size=size, mask=src.mask, tie=src)
        mask = None
        if sparse and width > 1 and rng.random() < 0.5:
            mask = rng.random((size, width)) < 0.6
            mask[np.arange(size), rng.integers(0, width, size)] = True
        s = pc.summate(*kids, size=size, mask=mask)
        tied_pool[key] = s
        return s

    root = region(list(range(num_vars)), 1, 0)
    variables = [Variable(f"x{i}", Domain(None) if i in real else Domain(cats[i])) for i in range(num_vars)]
    circuit = pc.build(root, variables)
    from pccompile.passes import InitParams

    return InitParams(seed=int(rng.integers(1 << 30))).run(circuit)


def reference_prob(circuit: Circuit, row) -> float:
    """p(row) by walking node vectors in linear space; None / -1 / NaN entries are marginalised.
    Float32 weight rows sum to 1 only to ~1e-7; like the runtime, the reference renormalises."""
    return float(reference_values(circuit, row)[circuit.root][0])


def reference_flows(circuit: Circuit, row, node_flows: bool = False):
    """Edge flows F_{n,c}(row) of every sum vector ({id: [size, K]}) by their definition, top
    down from root flow 1: a sum row passes theta p_c / p_n of its flow down each edge, a product
    its whole flow to each child row. Tied sums' flows are added into their source's entry.
    `node_flows`: also every node vector's flow ({id: [size]}), as (edges, nodes)."""
    vals = reference_values(circuit, row)
    flow = {nid: np.zeros(n.size) for nid, n in circuit.nodes.items()}
    flow[circuit.root][:] = 1.0
    edges: dict[int, np.ndarray] = {}
    for nid in reversed(list(circuit.nodes)):
        n = circuit.nodes[nid]
        if isinstance(n, InputNode):
            continue
        if isinstance(n, ProductNode):
            for k, c in enumerate(n.children):
                np.add.at(flow[c], n.child_rows(k), flow[nid])
            continue
        src = circuit.param_source(n)
        w = np.asarray(circuit.params[src.id]["weights"], np.float64)
        w = w / w.sum(1, keepdims=True)
        kids = np.concatenate([vals[c] for c in n.children])
        with np.errstate(divide="ignore", invalid="ignore"):
            f = np.where(vals[nid][:, None] > 0, w * kids[None, :] * (flow[nid] / vals[nid])[:, None], 0.0)
        edges[src.id] = edges.get(src.id, 0) + f
        start = 0
        for c in n.children:
            size = circuit.nodes[c].size
            flow[c] += f[:, start : start + size].sum(0)
            start += size
    return (edges, flow) if node_flows else edges


def reference_values(circuit: Circuit, row) -> dict[int, np.ndarray]:
    """Every node vector's value at `row`, in linear space (see reference_prob)."""
    vals: dict[int, np.ndarray] = {}
    for nid, n in circuit.nodes.items():
        if isinstance(n, InputNode):
            v = row[n.var]
            p = circuit.params[nid]
            if v is None or (isinstance(v, float) and math.isnan(v)) or (not isinstance(v, float) and v == -1):
                vals[nid] = np.ones(n.size)
            elif n.dist.name == "categorical":
                probs = np.asarray(p["probs"], np.float64)
                vals[nid] = (probs / probs.sum(1, keepdims=True))[:, int(v)]
            elif n.dist.name == "bernoulli":
                q = np.asarray(p["p"], np.float64)
                vals[nid] = q if int(v) == 1 else 1 - q
            elif n.dist.name == "binomial":
                q, t, k = np.asarray(p["p"], np.float64), n.dist.trials, int(v)
                vals[nid] = math.comb(t, k) * q**k * (1 - q) ** (t - k)
            else:
                mu, sd = np.asarray(p["mean"], np.float64), np.asarray(p["std"], np.float64)
                vals[nid] = np.exp(-0.5 * ((v - mu) / sd) ** 2) / (sd * math.sqrt(2 * math.pi))
        elif isinstance(n, ProductNode):
            out = np.ones(n.size)
            for k, c in enumerate(n.children):
                out = out * vals[c][n.child_rows(k)]
            vals[nid] = out
        else:
            src = circuit.param_source(n)
            w = np.asarray(circuit.params[src.id]["weights"], np.float64)
            w = w / w.sum(1, keepdims=True)  # a circuit means its normalised weights
            vals[nid] = w @ np.concatenate([vals[c] for c in n.children])
    return vals


def all_assignments(circuit: Circuit):
    cats = [v.domain.num_cats for v in circuit.variables]
    return [list(a) for a in itertools.product(*[range(k) for k in cats])]


# Node 0 puts all its weight on a child 5,000 nats below its sibling (the group max), so the
# factored sum underflows; an exact path must give the true value. The root reads only node 0.
UNDERFLOW_CIRCUIT = """var h : real
lh[2] = gaussian(h, mean=[0, 100], std=[1, 1])
s[2] = sum(lh, mask=[[1, 1], [1, 1]], weights=[[1, 0], [0, 1]])
p[2] = product(s)
root = sum(p, weights=[[1, 0]])
"""

# Variable a has probability 0 of being 1 in every component: evidence a = 1 is impossible.
ZERO_EVIDENCE_CIRCUIT = (
    "var a, b : binary\nla[2] = bernoulli(a, p=[0, 0])\nlb[2] = bernoulli(b)\np = product(la, lb)\nroot = sum(p)\n"
)


def located(text: str, match: str, line: int, token: str, **kw) -> SourceError:
    """The error of compiling `text`: its message matches, it is on `line`, and its caret stands
    under the first character of `token` on that line."""
    with pytest.raises(SourceError, match=match) as info:
        pc.compile(text, **kw)
    e = info.value
    assert e.line == line, str(e)
    src = text.split("\n")[line - 1]
    assert e.column == src.index(token) + 1, str(e)
    shown, caret = str(e).split("\n")[1:3]
    assert caret.index("^") - 4 == src.index(token), str(e)
    return e
