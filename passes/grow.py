"""`grow`: every node vector becomes `factor` noisy copies of itself, as in "Sparse Probabilistic
Circuits via Pruning and Growing" (Dang, Liu, Van den Broeck, 2022).

Inputs are copied (row i of copy k is row k * n + i); products take the matching copies of
their children; a sum's copy reads every copy of every child it read. Its weights, by `form`:

- released (the authors' `triple_edges`): one eps ~ N(1, noise^2) per old edge, and the edges to
  the child's copies get theta^eps and theta^(1/eps) (for factor 2; exponents eps^s with s
  evenly from 1 to -1 for more copies), normalised; every copy of the sum shares them, so the
  copies are told apart by the weights on their children's copies;
- independent: normalize([theta, ..., theta] * eps), a fresh eps ~ N(1, noise^2) clamped to
  >= 0.1 for every weight of every copy.

The root stays a single node (one sum over every copy). With noise = 0 the distribution is
unchanged exactly in both forms: each copy puts theta / factor on `factor` identical children.
Masks (pruned circuits) are copied with the weights, so growing keeps the sparsity pattern; tied
sums stay tied to their grown source.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Literal

import numpy as np
from pccompile.ir import ArgumentError, Circuit, InputNode, ProductNode, SumNode
from pccompile.ir.limits import MAX_VECTOR_SIZE, check_limit, parameter_count
from pccompile.ir.options import NonNegative, Range, Seed

from .base import Pass, PassContext, register


@register
@dataclasses.dataclass(frozen=True)
class Grow(Pass):
    """Grow every node vector by `factor` with noisy copies of its parameters."""

    name = "grow"
    factor: Annotated[int, Range(1, MAX_VECTOR_SIZE)] = 2
    noise: NonNegative = 0.1
    seed: Seed = 0
    # released: SparsePC's form, noise on the log-weights, shared by a sum's copies;
    # independent: each weight of each copy times its own max(N(1, noise^2), 0.1)
    form: Literal["released", "independent"] = "released"

    def parameters_after(self, circuit: Circuit) -> int:
        """Every vector grows `factor` times and every sum reads `factor` times the columns, so
        inputs grow by factor and sums by factor squared (the root, a single row, by factor)."""
        f = self.factor
        for n in circuit.nodes.values():
            if n.id != circuit.root:
                check_limit(f"pass 'grow{{factor={f}}}': node '{n.name}' would have size", n.size * f, MAX_VECTOR_SIZE)
        return parameter_count(
            circuit, scale=lambda n: f if n.id == circuit.root or isinstance(n, InputNode) else f * f
        )

    def run(self, circuit: Circuit, ctx: PassContext | None = None) -> Circuit:
        self.check_resources(circuit)  # also when called directly, not through a PassManager
        root = circuit.nodes[circuit.root]
        if not isinstance(root, SumNode):
            raise ArgumentError("pass 'grow' needs a sum at the root (it stays a single node)")
        missing = [
            n.name
            for n in circuit.nodes.values()
            if n.id not in circuit.params
            and not isinstance(n, ProductNode)
            and not (isinstance(n, SumNode) and n.tie is not None)
        ]
        if missing:
            raise ArgumentError(f"pass 'grow' needs the parameters of node '{missing[0]}'; run 'init' first")
        f, rng = self.factor, np.random.default_rng(self.seed)
        nodes, params = {}, {}
        for nid, n in circuit.nodes.items():
            size = 1 if nid == circuit.root else n.size * f
            if isinstance(n, InputNode):
                nodes[nid] = dataclasses.replace(n, size=size)
                params[nid] = {k: np.concatenate([np.asarray(v)] * f) for k, v in circuit.params[nid].items()}
            elif isinstance(n, ProductNode):
                nodes[nid] = dataclasses.replace(n, size=size, index=_grown_index(circuit, n, f))
            else:
                mask = _grown_columns(circuit, n, circuit.edge_mask(n), f)
                rows = 1 if nid == circuit.root else f
                mask = np.concatenate([mask] * rows)
                nodes[nid] = dataclasses.replace(n, size=size, mask=None if mask.all() else mask)
                if n.tie is None:
                    theta = np.asarray(circuit.params[nid]["weights"], np.float64)
                    if self.form == "released" and self.noise > 0 and f > 1:
                        w = np.concatenate([_released_weights(circuit, n, theta, f, self.noise, rng)] * rows)
                    else:
                        w = np.concatenate([_grown_columns(circuit, n, theta, f)] * rows)
                        if self.noise > 0:  # without noise, theta / f already sums to what theta did
                            w = w * np.maximum(rng.normal(1.0, self.noise, w.shape), 0.1)
                    w = np.where(mask, w, 0.0)
                    if self.noise > 0:  # without noise, theta / f already sums to what theta did
                        w = w / w.sum(1, keepdims=True)
                    params[nid] = {"weights": w.astype(np.float32)}
        return circuit.replace(nodes=nodes, params=params)


def _grown_columns(circuit: Circuit, n: SumNode, a: np.ndarray, f: int) -> np.ndarray:
    """[size, K] per old column -> [size, f * K]: each child's block repeated for its f copies,
    the values divided by f (so equal copies add up to the old value)."""
    out, start = [], 0
    for c in n.children:
        s = circuit.nodes[c].size
        block = a[:, start : start + s]
        out.append(np.concatenate([block / f if block.dtype.kind == "f" else block] * f, axis=1))
        start += s
    return np.concatenate(out, axis=1)


LOG_FLOOR = -60.0  # e^-60 ~ 9e-27: far inside float32, far below any weight EM cares about


def _released_weights(circuit: Circuit, n: SumNode, theta: np.ndarray, f: int, sigma: float, rng) -> np.ndarray:
    """SparsePC's growth noise: one eps ~ N(1, sigma^2) per old edge (a negative draw becomes
    0.1, as there), and copy k of the child column gets theta^(eps^s_k) with s_k running evenly
    from 1 to -1 over the copies: theta^eps and theta^(1/eps) for a doubling. Every copy of the
    sum shares the result (the caller repeats it per row copy); rows are normalised after."""
    eps = rng.normal(1.0, sigma, theta.shape)
    eps[eps < 0] = 0.1
    spread = np.linspace(1.0, -1.0, f)
    with np.errstate(divide="ignore"):
        log_theta = np.log(theta)
    out: list[np.ndarray] = []
    start = 0
    for c in n.children:
        s = circuit.nodes[c].size
        block, e = log_theta[:, start : start + s], eps[:, start : start + s]
        out.extend(np.where(np.isfinite(block), block * e**sk, -np.inf) for sk in spread)
        start += s
    logw = np.concatenate(out, axis=1)
    logw = logw - logw.max(1, keepdims=True)
    # theta^(1/eps) for a small eps underflows float32 (0.01^20 = 1e-40): a live edge keeps at
    # least e^-60 of its row's largest, where the released code, in log space, keeps any value
    return np.exp(np.where(np.isfinite(logw), np.maximum(logw, LOG_FLOOR), -np.inf))


def _grown_index(circuit: Circuit, n: ProductNode, f: int):
    """Copy k of a product reads copy k of each child: old rows shifted by k times the child's
    old size (an elementwise product stays elementwise)."""
    if n.index is None:
        return None
    out: list[np.ndarray | None] = []
    for k, c in enumerate(n.children):
        ix = n.index[k]
        if ix is None:
            out.append(None)
            continue
        s = circuit.nodes[c].size
        out.append(np.concatenate([np.asarray(ix) + copy * s for copy in range(f)]))
    return tuple(out)
