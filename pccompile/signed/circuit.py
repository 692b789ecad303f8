"""SignedCircuit: a circuit whose sum weights may be negative, evaluated in signed log space
(log-magnitude and sign) with torch, and its square as a density.

A monotone circuit's values are positive, so the compiled backends carry log-values alone. A
signed circuit c can be negative or cancel to exactly zero: every value here is a pair
(log|v|, sign v). A product adds log-magnitudes and multiplies signs; a sum subtracts the max
log-magnitude of its children, takes the signed linear combination of what is left, and
returns log|total| + max with the total's sign, so nothing under- or overflows and a
cancellation gives log 0 = -inf.

The density is the square: p(x) = c(x)^2 / Z with Z the integral of c^2. Z is computed from c's
own parameters, never by building c * c: for every pair of node vectors (u, v) that
`multiply(c, c)` would pair (passes.multiply.Pairing), the Gram matrix G[u, v] = integral of
u_i v_j, from the inputs' closed-form Grams up: a pair of sums is W_u G W_v^T over the children
pairs, a pair of products the elementwise product of its factors' Grams. That costs the square's
size once per parameter update, independent of the batch; log p(x) = 2 log|c(x)| - log Z
costs one evaluation of c per row. Observed variables enter the same recursion with
f_i(x) g_j(x) in place of the integral, which gives marginals and the exact autoregressive
conditionals that `sample` draws from.

`squared=False` evaluates the circuit itself as the density, p(x) = c(x) / (integral of c):
for a monotone circuit that is the baseline of the same structure (softmax weights, the
integral 1), trained by the same code with the same budget; for a signed circuit that is
non-negative by construction (the IR circuit `passes.square` builds) the weights stay as they
are and the integral is c with every variable integrated out.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pccompile.ir import Circuit, InputNode, ProductNode, SumNode, verify
from pccompile.passes.multiply import Pairing

from .inputs import input_module

Signed = tuple[torch.Tensor, torch.Tensor]  # (log-magnitude, sign), same shape


def _signed_combine(logabs: torch.Tensor, sign: torch.Tensor, apply, dims) -> Signed:
    """(log|y|, sign y) for y = apply(sign * exp(logabs)), a linear map, computed after
    shifting by the max log-magnitude over `dims` (0 where all are -inf)."""
    top = logabs.amax(dims, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    y = apply(sign * (logabs - top).exp())
    return y.abs().log() + top.reshape(top.shape[0], *([1] * (y.dim() - 1))), torch.sign(y)


class SignedCircuit(nn.Module):
    """A trainable signed circuit over the structure of an IR circuit (any smooth and
    decomposable one for evaluation; structured-decomposable, as multiply needs, for the
    square's integral). Its parameters start at the circuit's; `to_circuit` gives them back.

    x: a float tensor [B, num_vars] of values, NaN (or -1 for a discrete variable) where a
    value is missing; missing variables are integrated out."""

    def __init__(self, circuit: Circuit, *, squared: bool = True, dtype: torch.dtype = torch.float32):
        super().__init__()
        verify(circuit, require_params=True)
        self.circuit, self.squared = circuit, squared
        self.raw_weights = squared or circuit.meta.get("signed") is True  # else the monotone softmax
        self.inputs = nn.ModuleDict()
        self.weight = nn.ParameterDict()
        self.masks: dict[int, torch.Tensor] = {}
        for nid, n in circuit.nodes.items():
            if isinstance(n, InputNode):
                self.inputs[str(nid)] = input_module(n, circuit.params[nid], dtype)
            elif isinstance(n, SumNode) and n.tie is None:
                self._add_sum(n, dtype)
        self.rows = {
            nid: [torch.as_tensor(n.child_rows(k), dtype=torch.long) for k in range(len(n.children))]
            for nid, n in circuit.nodes.items()
            if isinstance(n, ProductNode)
        }
        self._pairing: list | None = None

    def _add_sum(self, n: SumNode, dtype) -> None:
        w = np.asarray(self.circuit.params[n.id]["weights"], np.float64)
        mask = self.circuit.edge_mask(n)
        self.masks[n.id] = torch.as_tensor(mask)
        if self.raw_weights:
            self.weight[str(n.id)] = nn.Parameter(torch.as_tensor(np.where(mask, w, 0.0), dtype=dtype))
        else:  # the monotone baseline: logits of a softmax over each row's edges
            with np.errstate(divide="ignore"):
                logits = np.where(mask, np.log(np.maximum(w, 1e-30)), 0.0)
            self.weight[str(n.id)] = nn.Parameter(torch.as_tensor(logits, dtype=dtype))

    # -- parameters ----------------------------------------------------------------------------
    def weights(self, n: SumNode) -> torch.Tensor:
        """The sum's effective weights [size, K]: as stored (signed), or the monotone softmax."""
        src = self.circuit.param_source(n)
        w, mask = self.weight[str(src.id)], self.masks[src.id]
        if self.raw_weights:
            return torch.where(mask, w, torch.zeros_like(w))
        return torch.softmax(torch.where(mask, w, torch.full_like(w, -torch.inf)), 1)

    def to_circuit(self) -> Circuit:
        """The IR circuit with the current parameters (meta signed for a squared circuit: the
        circuit is c, whose square is the density)."""
        params = {k: dict(v) for k, v in self.circuit.params.items()}
        for key, mod in self.inputs.items():
            params[int(key)] = mod.ir_params()
        for n in self.circuit.nodes.values():
            if isinstance(n, SumNode) and n.tie is None:
                params[n.id] = {"weights": self.weights(n).detach().cpu().numpy().astype(np.float32)}
        meta = dict(self.circuit.meta)
        meta["signed"] = self.raw_weights
        return Circuit(
            self.circuit.variables, self.circuit.nodes, self.circuit.root, params, meta, self.circuit.regions
        )

    # -- evaluation of c -----------------------------------------------------------------------
    def _missing(self, x: torch.Tensor) -> torch.Tensor:
        discrete = torch.tensor([v.domain.num_cats is not None for v in self.circuit.variables], device=x.device)
        return torch.isnan(x) | (discrete[None, :] & (x == -1))

    def signed_values(self, x: torch.Tensor, below: tuple[int, torch.Tensor] | None = None) -> Signed:
        """(log|c(x)|, sign c(x)), each [B]. `below` = (v, t [B]): variable v integrated from
        -inf to t instead of observed (the CDF that sampling a real variable inverts)."""
        missing = self._missing(x)
        vals: dict[int, Signed] = {}
        for nid, n in self.circuit.nodes.items():
            if isinstance(n, InputNode):
                mod = self.inputs[str(nid)]
                at_cdf = below is not None and below[0] == n.var
                lp = mod.log_cdf(below[1]) if at_cdf else mod.log_density(x[:, n.var])
                lp = torch.where(missing[:, n.var, None], torch.zeros_like(lp), lp)
                vals[nid] = (lp, torch.ones_like(lp))
            elif isinstance(n, ProductNode):
                parts = [(vals[c][0][:, r], vals[c][1][:, r]) for c, r in zip(n.children, self.rows[nid])]
                vals[nid] = (sum(p[0] for p in parts), torch.stack([p[1] for p in parts]).prod(0))
            else:
                la = torch.cat([vals[c][0] for c in n.children], 1)
                sg = torch.cat([vals[c][1] for c in n.children], 1)
                w = self.weights(n)
                vals[nid] = _signed_combine(la, sg, lambda e, w=w: e @ w.t(), (1,))
        la, sg = vals[self.circuit.root]
        return la[:, 0], sg[:, 0]

    # -- the square's integral -----------------------------------------------------------------
    def _pairs(self) -> list:
        if self._pairing is None:
            pairing = Pairing(self.circuit, self.circuit)
            self._pairing = [(i, j, pairing.children(i, j), pairing) for i, j in pairing.pairs()]
        return self._pairing

    def log_gram(self, x: torch.Tensor | None = None, below: tuple[int, torch.Tensor] | None = None) -> torch.Tensor:
        """log of the integral of c^2 over the variables missing in x (all of them when x is
        None, [1]), at x's observed values: [B]. c^2 >= 0, so the sign is dropped. `below` =
        (v, t [B]): variable v integrated from -inf to t only."""
        missing = None if x is None else self._missing(x)
        gram: dict[tuple[int, int], Signed] = {}
        nodes = self.circuit.nodes
        for i, j, kids, pairing in self._pairs():
            n, m = nodes[i], nodes[j]
            if isinstance(n, SumNode) or isinstance(m, SumNode):
                gram[(i, j)] = self._sum_gram(n, m, kids, gram)
            elif isinstance(n, InputNode) and isinstance(m, InputNode):
                gram[(i, j)] = self._input_gram(n, m, x, missing, below)
            else:
                gram[(i, j)] = self._product_gram(pairing.matched(i, j), gram)
        la, _ = gram[(self.circuit.root, self.circuit.root)]
        return la[:, 0, 0]

    def _input_gram(self, n: InputNode, m: InputNode, x, missing, below) -> Signed:
        a, b = self.inputs[str(n.id)], self.inputs[str(m.id)]
        if below is not None and below[0] == n.var:
            part = a.log_gram_below(b, below[1])  # [B, N, M]
            return part, torch.ones_like(part)
        full = a.log_gram(b)[None]  # [1, N, M]
        if x is not None:
            at = a.log_density(x[:, n.var])[:, :, None] + b.log_density(x[:, m.var])[:, None, :]
            full = torch.where(missing[:, n.var, None, None], full, at)
        return full, torch.ones_like(full)

    def _product_gram(self, matched, gram) -> Signed:
        la, sg = 0, 1
        for c, d, rows_a, rows_b in matched:
            gl, gs = gram[(c, d)]
            ra, rb = torch.as_tensor(rows_a, dtype=torch.long), torch.as_tensor(rows_b, dtype=torch.long)
            la = la + gl[:, ra][:, :, rb]
            sg = sg * gs[:, ra][:, :, rb]
        return la, sg

    def _sum_gram(self, n, m, kids, gram) -> Signed:
        wa, ka = self._as_sum(n)
        wb, kb = self._as_sum(m)
        rows = []
        for c in ka:  # the block matrix of the children pairs' Grams, [B, Ka, Kb]
            rows.append([gram[(c, d)] for d in kb])
        la = torch.cat([torch.cat([g[0] for g in r], 2) for r in rows], 1)
        sg = torch.cat([torch.cat([g[1] for g in r], 2) for r in rows], 1)
        return _signed_combine(la, sg, lambda e: wa @ e @ wb.t(), (1, 2))

    def _as_sum(self, n) -> tuple[torch.Tensor, tuple[int, ...]]:
        """(weights, children); a non-sum is a sum of itself with the identity for weights."""
        if isinstance(n, SumNode):
            return self.weights(n), n.children
        ref = next(iter(self.parameters()))
        return torch.eye(n.size, dtype=ref.dtype, device=ref.device), (n.id,)

    # -- the density ---------------------------------------------------------------------------
    def log_norm(self) -> torch.Tensor:
        """log Z: the integral of c^2 (squared), of c (a signed circuit read as is), 0 for the
        monotone baseline (normalised by its softmax weights and inputs)."""
        if self.squared:
            return self.log_gram()[0]
        ref = next(iter(self.parameters()))
        if self.raw_weights:
            everything = torch.full((1, self.circuit.num_vars), float("nan"), dtype=ref.dtype, device=ref.device)
            return self.signed_values(everything)[0][0]
        return torch.zeros((), dtype=ref.dtype, device=ref.device)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) [B]; missing values integrated out (the marginal)."""
        if not self.squared:
            return self.signed_values(x)[0] - self.log_norm() if self.raw_weights else self.signed_values(x)[0]
        if bool(self._missing(x).any()):
            return self.log_gram(x) - self.log_norm()
        return 2 * self.signed_values(x)[0] - self.log_norm()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.log_prob(x)
