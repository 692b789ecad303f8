"""`multiply(a, b)`: the product of two compatible circuits, and the queries built on it.

Two circuits over the same variables are compatible when their products split the variables
the same way (structured decomposability over one partition tree: HCLTs of one tree, RAT-SPNs
or PDs of one region graph). Their product is then a circuit of the same shape, built pair by
pair from the roots down: two inputs over one variable multiply in closed form within their
family (ir/families/products.py: tables of
values into a categorical, Gaussians and exponentials in their own family); two sums (or a sum and anything, read as a sum of one child)
give a sum over every pair of children with the products of their weights; two products give
a product of the pairs of children with equal scopes. A pair of vectors of sizes N and M is a
vector of N * M rows, row r * M + s for (r, s); a sum pair's edges are the products of the two
sums' edges, so the result has at most |a| |b| edges per sum.

The product p_a p_b is not normalised: as `integrate` and `condition` do (passes/marginalize.py),
each input pair's constant Z moves up in log space into the sums' weights, which are
renormalised, so the result is the normalised q = p_a p_b / Z with log Z in
`meta["log_scale"]`. That makes log Z = log of the integral of p_a p_b a by-product:
`log_inner_product` (expectations of one circuit under another) and `squared_distance`
(the integral of (p_a - p_b)^2) read it.
"""

from __future__ import annotations

import math

import numpy as np
from pccompile.ir import Circuit, InputNode, ProductNode, StructureError, SumNode, verify
from pccompile.ir.families.products import input_product

from .marginalize import _log_normalise


def multiply(a: Circuit, b: Circuit) -> Circuit:
    """The normalised product of two compatible circuits; log of the integral of p_a p_b (and
    of the factors a and b carried) in meta["log_scale"]."""
    if [(v.name, v.domain) for v in a.variables] != [(v.name, v.domain) for v in b.variables]:
        raise StructureError(None, "multiply needs two circuits over the same variables (names and domains)")
    verify(a, require_params=True)  # every weight and input parameter given (run `init` first)
    verify(b, require_params=True)
    return _Product(a, b).build()


def square(c: Circuit) -> Circuit:
    """c^2 / Z with Z the integral of c^2 (log Z in meta["log_scale"]): a density for any
    signed (or monotone) circuit c, since c^2 >= 0. `multiply(c, c)`, whose signed result is
    normalised by its own integral."""
    return multiply(c, c)


def log_inner_product(a: Circuit, b: Circuit) -> float:
    """log of the integral (sum) over x of p_a(x) p_b(x): E_{p_a}[p_b], the expectation of
    circuit b under circuit a."""
    return float(multiply(a, b).meta["log_scale"])


def squared_distance(a: Circuit, b: Circuit) -> float:
    """The integral of (p_a - p_b)^2: int p_a^2 - 2 int p_a p_b + int p_b^2."""
    return math.exp(log_inner_product(a, a)) - 2 * math.exp(log_inner_product(a, b)) + math.exp(log_inner_product(b, b))


class Pairing:
    """Which pairs of node vectors (one of a, one of b) the product of two circuits needs, from
    the roots down, and how a pair of products matches its factors: the structure of `multiply`,
    shared with evaluators that walk the pairs without building the product (pccompile.signed's
    integral of a square)."""

    def __init__(self, a: Circuit, b: Circuit):
        self.a, self.b = a, b
        self.scope_a, self.scope_b = a.scopes(), b.scopes()

    def pairs(self) -> list[tuple[int, int]]:
        """Every pair the product needs, children before parents."""
        pos_a = {i: k for k, i in enumerate(self.a.nodes)}
        pos_b = {i: k for k, i in enumerate(self.b.nodes)}
        return sorted(self._pairs(), key=lambda p: (pos_a[p[0]] + pos_b[p[1]], p))

    def children(self, i: int, j: int) -> list[tuple[int, int]]:
        n, m = self.a.nodes[i], self.b.nodes[j]
        if self.scope_a[i] != self.scope_b[j]:
            raise StructureError(
                n.name, f"multiply: '{n.name}' and '{m.name}' are paired but cover different variables (incompatible)"
            )
        if isinstance(n, SumNode) or isinstance(m, SumNode):
            kids_a = n.children if isinstance(n, SumNode) else (i,)
            kids_b = m.children if isinstance(m, SumNode) else (j,)
            return [(c, d) for c in kids_a for d in kids_b]
        if isinstance(n, InputNode) and isinstance(m, InputNode):
            return []
        return [(c, d) for c, d, _, _ in self.matched(i, j)]

    def _pairs(self) -> set[tuple[int, int]]:
        todo, seen = [(self.a.root, self.b.root)], set()
        while todo:
            p = todo.pop()
            if p not in seen:
                seen.add(p)
                todo.extend(self.children(*p))
        return seen

    @staticmethod
    def _factors(n) -> list[tuple[int, np.ndarray]]:
        """A product's (child, its rows per row); an input read as a product of itself."""
        if isinstance(n, ProductNode):
            return [(c, n.child_rows(k)) for k, c in enumerate(n.children)]
        return [(n.id, np.arange(n.size))]

    def matched(self, i: int, j: int) -> list[tuple[int, int, np.ndarray, np.ndarray]]:
        """(child of a's node i, child of b's node j, rows of each) with equal scopes, or an
        incompatibility error."""
        n, m = self.a.nodes[i], self.b.nodes[j]
        fa = self._factors(n)
        fb = {self.scope_b[d]: (d, rows) for d, rows in self._factors(m)}
        out = []
        for c, rows in fa:
            if self.scope_a[c] not in fb:
                names = sorted(self.a.variables[v].name for v in self.scope_a[c])
                raise StructureError(
                    n.name,
                    f"multiply: '{n.name}' and '{m.name}' split their variables differently ('{m.name}' has no "
                    f"factor over {{{', '.join(names)}}}): the circuits are not compatible",
                )
            d, rows_b = fb[self.scope_a[c]]
            out.append((c, d, rows, rows_b))
        return out


class _Product(Pairing):
    def __init__(self, a: Circuit, b: Circuit):
        super().__init__(a, b)
        self.nodes: dict[int, object] = {}
        self.params: dict[int, dict[str, np.ndarray]] = {}
        self.const: dict[int, np.ndarray] = {}  # log-constant per row of each new vector
        self.ids: dict[tuple[int, int], int] = {}
        self.signed = bool(a.meta.get("signed")) or bool(b.meta.get("signed"))

    def build(self) -> Circuit:
        for pair in self.pairs():
            self._make(*pair)
        root = self.ids[(self.a.root, self.b.root)]
        log_scale = float(self.a.meta.get("log_scale", 0.0)) + float(self.b.meta.get("log_scale", 0.0))
        meta: dict[str, object] = {"name": f"{self.a.meta.get('name', 'a')} * {self.b.meta.get('name', 'b')}"}
        meta["log_scale"] = log_scale + float(self.const[root][0])
        if "image" in self.a.meta:
            meta["image"] = self.a.meta["image"]
        if not self.signed:
            return Circuit(self.a.variables, self.nodes, root, self.params, meta)
        meta["signed"] = True
        return _normalised_signed(Circuit(self.a.variables, self.nodes, root, self.params, meta))

    # -- one pair ------------------------------------------------------------------------------
    def _new(self, i: int, j: int, node_fn, log_c: np.ndarray, params: dict | None) -> None:
        nid = len(self.nodes)
        n, m = self.a.nodes[i], self.b.nodes[j]
        self.nodes[nid] = node_fn(nid, f"{n.name}__{m.name}", n.size * m.size)
        self.const[nid] = log_c
        if params is not None:
            self.params[nid] = params
        self.ids[(i, j)] = nid

    def _make(self, i: int, j: int) -> None:
        n, m = self.a.nodes[i], self.b.nodes[j]
        if isinstance(n, SumNode) or isinstance(m, SumNode):
            self._sum(i, j)
        elif isinstance(n, InputNode) and isinstance(m, InputNode):
            self._input(n, m)
        else:
            self._product(i, j)

    def _input(self, n: InputNode, m: InputNode) -> None:
        got = input_product(n.dist, m.dist, self.a.params[n.id], self.b.params[m.id])
        if got is None:
            raise StructureError(
                n.name,
                f"multiply: no closed form for the product of a {n.dist.describe()} input ('{n.name}') and a "
                f"{m.dist.describe()} input ('{m.name}')",
            )
        dist, params, log_z = got
        self._new(n.id, m.id, lambda nid, name, size: InputNode(nid, name, n.var, size, dist), log_z, params)

    def _product(self, i: int, j: int) -> None:
        n, m = self.a.nodes[i], self.b.nodes[j]
        kids, index = [], []
        log_c = np.zeros(n.size * m.size)
        for c, d, rows_a, rows_b in self.matched(i, j):
            pid = self.ids[(c, d)]
            rows = (np.repeat(rows_a, m.size) * self.b.nodes[d].size + np.tile(rows_b, n.size)).astype(np.int64)
            kids.append(pid)
            index.append(rows)
            log_c = log_c + self.const[pid][rows]
        self._new(i, j, lambda nid, name, size: ProductNode(nid, name, tuple(kids), size, tuple(index)), log_c, None)

    def _weights(self, circuit: Circuit, n, i: int) -> tuple[list[int], np.ndarray, np.ndarray]:
        """(children, normalised weights [size, K], mask [size, K]); a non-sum is a sum of one
        child, itself, with the identity for weights."""
        if not isinstance(n, SumNode):
            eye = np.eye(n.size)
            return [i], eye, eye.astype(bool)
        w = np.asarray(circuit.params[circuit.param_source(n).id]["weights"], np.float64)
        mask = circuit.edge_mask(n)
        w = np.where(mask, w, 0.0)
        if circuit.meta.get("signed"):
            return list(n.children), w, mask  # signed weights mean what they say, unnormalised
        return list(n.children), w / w.sum(1, keepdims=True), mask

    def _sum(self, i: int, j: int) -> None:
        n, m = self.a.nodes[i], self.b.nodes[j]
        kids_a, wa, ma = self._weights(self.a, n, i)
        kids_b, wb, mb = self._weights(self.b, m, j)
        size_a = [self.a.nodes[c].size for c in kids_a]
        size_b = [self.b.nodes[d].size for d in kids_b]
        off_a, off_b = np.cumsum([0] + size_a), np.cumsum([0] + size_b)
        cols_w, cols_m, cols_c, kids = [], [], [], []
        for x, c in enumerate(kids_a):
            for y, d in enumerate(kids_b):
                blk_a = wa[:, off_a[x] : off_a[x + 1]]  # [N, |c|]
                blk_b = wb[:, off_b[y] : off_b[y + 1]]  # [M, |d|]
                cols_w.append(np.einsum("ri,sj->rsij", blk_a, blk_b).reshape(n.size * m.size, -1))
                mk_a, mk_b = ma[:, off_a[x] : off_a[x + 1]], mb[:, off_b[y] : off_b[y + 1]]
                cols_m.append(np.einsum("ri,sj->rsij", mk_a, mk_b).reshape(n.size * m.size, -1))
                cols_c.append(self.const[self.ids[(c, d)]])
                kids.append(self.ids[(c, d)])
        w, mask = np.concatenate(cols_w, 1), np.concatenate(cols_m, 1)
        with np.errstate(divide="ignore"):
            logw = np.where(mask, np.log(np.abs(w)), -np.inf) + np.concatenate(cols_c)[None, :]
        # rows scaled by the sum of |w| (the sum itself when w >= 0): a positive constant per
        # row moves up, the signs stay in the weights
        w_new, log_c = _log_normalise(logw)
        w_new = w_new * np.sign(w)
        dense = bool(mask.all())
        params = {"weights": np.where(mask, w_new, 0.0).astype(np.float32)}
        self._new(
            i, j, lambda nid, name, size: SumNode(nid, name, tuple(kids), size, None if dense else mask), log_c, params
        )


def signed_integral(circuit: Circuit) -> float:
    """The integral of a circuit's value over every variable, in float64 linear space with its
    weights as stored (no renormalisation: the meaning of a signed circuit). Inputs integrate
    to 1; every row is a sum of |weights| at most 1 per level in the circuits `multiply`
    builds, so nothing overflows."""
    vals: dict[int, np.ndarray] = {}
    for nid, n in circuit.nodes.items():
        if isinstance(n, InputNode):
            vals[nid] = np.ones(n.size)
        elif isinstance(n, ProductNode):
            out = np.ones(n.size)
            for k, c in enumerate(n.children):
                out = out * vals[c][n.child_rows(k)]
            vals[nid] = out
        else:
            w = np.asarray(circuit.params[circuit.param_source(n).id]["weights"], np.float64)
            vals[nid] = np.where(circuit.edge_mask(n), w, 0.0) @ np.concatenate([vals[c] for c in n.children])
    return float(vals[circuit.root][0])


def _normalised_signed(c: Circuit) -> Circuit:
    """A signed product divided by its integral I, so that it integrates to 1 (log I moves
    into meta["log_scale"]); refused when I <= 0, which no square has."""
    total = signed_integral(c)
    if not total > 0:
        raise StructureError(
            None, f"multiply: the signed product integrates to {total:.6g}, so no normalisation makes it a density"
        )
    root = c.nodes[c.root]
    nodes, params = dict(c.nodes), {k: dict(v) for k, v in c.params.items()}
    if isinstance(root, SumNode) and root.tie is None:
        params[root.id]["weights"] = (np.asarray(params[root.id]["weights"], np.float64) / total).astype(np.float32)
        new_root = root.id
    else:  # a new root: a sum of the old one with weight 1 / I
        new_root = max(nodes) + 1
        nodes[new_root] = SumNode(new_root, f"{root.name}__scaled", (root.id,), 1)
        params[new_root] = {"weights": np.full((1, 1), 1.0 / total, np.float32)}
    meta = dict(c.meta)
    meta["log_scale"] = float(meta["log_scale"]) + math.log(total)
    return Circuit(c.variables, nodes, new_root, params, meta, c.regions)
