"""SignedCircuit: a circuit whose sum weights may be negative, evaluated in signed log space
(log-magnitude and sign), and its square as a density.

A monotone circuit's values are positive, so the compiled backends carry log-values alone. A
signed circuit c can be negative or cancel to exactly zero: every value here is a pair
(log|v|, sign v). c(x) runs on the compiler's lowered Program, layer by layer
(signed/program.py); a cancellation gives log 0 = -inf with sign 0.

The density is the square: p(x) = c(x)^2 / Z with Z the integral of c^2. Z is computed from c's
own parameters, never by building c * c: for every pair of node vectors (u, v) that
`multiply(c, c)` would pair (passes.multiply.Pairing), the Gram matrix G[u, v] = integral of
u_i v_j, from the inputs' closed forms (signed/inputs.py) up: a pair of sums is
W_u G W_v^T over the children pairs, a pair of products the elementwise product of its
factors' Grams. That costs the square's size once per parameter update, independent of the
batch; log p(x) = 2 log|c(x)| - log Z costs one evaluation of c per row. Observed variables
enter the same recursion with f_i(x) g_j(x) in place of the integral, which gives marginals
and the exact autoregressive conditionals that `sample` draws from.

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

from pccompile.ir import FIRST_ROW, Circuit, InputNode, SumNode, compact_ids, verify
from pccompile.passes.multiply import Pairing

from .inputs import rule_for
from .program import SignedProgram

Signed = tuple[torch.Tensor, torch.Tensor]  # (log-magnitude, sign), same shape


def _rows(rows: np.ndarray, size: int) -> torch.Tensor | None:
    """A factor's rows as an index tensor, or None when they are all of its `size` rows in order
    (an elementwise product reads them as they are)."""
    rows = np.asarray(rows)
    return None if np.array_equal(rows, np.arange(size)) else torch.as_tensor(rows, dtype=torch.long)


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
    value is missing; missing variables are integrated out. `target`: where c(x)'s forward pass
    runs (float32): Triton kernels ("triton"; on CUDA, or on the CPU under TRITON_INTERPRET=1),
    the CPU target's C kernels ("cpu"), torch ("torch"), or "auto": Triton on CUDA, C on the
    CPU where it builds, torch otherwise."""

    def __init__(
        self, circuit: Circuit, *, squared: bool = True, dtype: torch.dtype = torch.float32, target: str = "auto"
    ):
        super().__init__()
        verify(circuit, require_params=True)
        self.circuit = circuit = compact_ids(circuit)
        self.squared = squared
        self.raw_weights = squared or circuit.meta.get("signed") is True  # else the monotone softmax
        self.rules = {nid: rule_for(n) for nid, n in circuit.nodes.items() if isinstance(n, InputNode)}
        self.program = SignedProgram(circuit, signed=self.raw_weights, dtype=dtype, target=target)
        rows = self.program.program.node_rows
        self.input_rows = {nid: rows[nid] for nid in self.rules}  # (first row, size) in the buffer
        self._pairing: list | None = None

    # -- parameters ----------------------------------------------------------------------------
    def weights(self, n: SumNode, flat: torch.Tensor | None = None) -> torch.Tensor:
        """The sum's effective weights [size, K]: as stored (signed), or the monotone softmax."""
        return self.program.node_weights(n, self.program.flat_weights() if flat is None else flat)

    def to_circuit(self) -> Circuit:
        """The IR circuit with the current parameters (meta signed where the weights are raw:
        for a squared circuit the circuit is c, whose square is the density)."""
        params: dict[int, dict[str, np.ndarray]] = {}
        flat = self.program.flat_weights().detach()
        for n in self.circuit.nodes.values():
            if isinstance(n, SumNode) and n.tie is None:
                params[n.id] = {"weights": self.weights(n, flat).cpu().numpy().astype(np.float32)}
            elif isinstance(n, InputNode):
                p = {k: v.detach().cpu().numpy() for k, v in self.program.input_params(n.id).items()}
                params[n.id] = n.dist.runtime_to_ir(p, slice(None))
        meta = dict(self.circuit.meta)
        meta["signed"] = self.raw_weights
        return Circuit(
            self.circuit.variables, self.circuit.nodes, self.circuit.root, params, meta, self.circuit.regions
        )

    # -- evaluation of c -----------------------------------------------------------------------
    def _inputs(self, x: torch.Tensor, below=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(input rows' log-values [R_in, B], missing [B, V]); `below` = (v, t [B]): variable
        v's rows integrated from -inf to t instead."""
        x_int, x_real = self.program.encode(x)
        missing = x_int == -1
        if x_real is not None:
            real = torch.as_tensor(self.program.program.var_cats == 0, device=x.device)
            missing = torch.where(real[None, :], torch.isnan(x_real), missing)
        logp = self.program.input_log_probs(x_int, x_real)
        if below is not None:
            v, t = below
            logp = logp.clone()
            for nid, rule in self.rules.items():
                if self.circuit.nodes[nid].var == v:
                    first, size = self.input_rows[nid]
                    logp[first - FIRST_ROW : first - FIRST_ROW + size] = rule.log_cdf(
                        self.program.input_params(nid), t
                    ).t()
        return logp, missing

    def signed_values(self, x: torch.Tensor, below: tuple[int, torch.Tensor] | None = None) -> Signed:
        """(log|c(x)|, sign c(x)), each [B]. `below` = (v, t [B]): variable v integrated from
        -inf to t instead of observed (the CDF that sampling a real variable inverts)."""
        logp, _ = self._inputs(x, below)
        return self.program.root_values(logp)

    # -- the square's integral -----------------------------------------------------------------
    def _pairs(self) -> list:
        """(i, j, matched factors with row index tensors, for a pair of products) of every pair
        the square needs, children first; computed once."""
        if self._pairing is None:
            pairing = Pairing(self.circuit, self.circuit)
            out = []
            for i, j in pairing.pairs():
                n, m = self.circuit.nodes[i], self.circuit.nodes[j]
                matched = None
                sums = isinstance(n, SumNode) or isinstance(m, SumNode)
                if not sums and not (isinstance(n, InputNode) and isinstance(m, InputNode)):
                    matched = [
                        (c, d, _rows(ra, self.circuit.nodes[c].size), _rows(rb, self.circuit.nodes[d].size))
                        for c, d, ra, rb in pairing.matched(i, j)
                    ]
                out.append((i, j, matched))
            self._pairing = out
        return self._pairing

    def log_gram(self, x: torch.Tensor | None = None, below: tuple[int, torch.Tensor] | None = None) -> torch.Tensor:
        """log of the integral of c^2 over the variables missing in x (all of them when x is
        None, [1]), at x's observed values: [B]. c^2 >= 0, so the sign is dropped. `below` =
        (v, t [B]): variable v integrated from -inf to t only."""
        return self._gram(None if x is None else self._inputs(x), below)

    def _gram(self, evidence, below) -> torch.Tensor:
        """log_gram from the inputs' (log-values, missing) of `_inputs`, or None for none observed."""
        flat = self.program.flat_weights()
        gram: dict[tuple[int, int], Signed] = {}
        nodes = self.circuit.nodes
        for i, j, matched in self._pairs():
            n, m = nodes[i], nodes[j]
            if isinstance(n, SumNode) or isinstance(m, SumNode):
                gram[(i, j)] = self._sum_gram(n, m, gram, flat)
            elif isinstance(n, InputNode) and isinstance(m, InputNode):
                gram[(i, j)] = self._input_gram(n, m, evidence, below)
            else:
                gram[(i, j)] = self._product_gram(matched, gram)
        la, _ = gram[(self.circuit.root, self.circuit.root)]
        return la[:, 0, 0]

    def _node_log_probs(self, logp: torch.Tensor, nid: int) -> torch.Tensor:
        first, size = self.input_rows[nid]
        return logp[first - FIRST_ROW : first - FIRST_ROW + size].t()  # [B, N]

    def _input_gram(self, n: InputNode, m: InputNode, evidence, below) -> Signed:
        rule, pa, pb = self.rules[n.id], self.program.input_params(n.id), self.program.input_params(m.id)
        if below is not None and below[0] == n.var:
            part = rule.log_gram_below(n, pa, m, pb, below[1])  # [B, N, M]
            return part, torch.ones_like(part)
        full = rule.log_gram(n, pa, m, pb)[None]  # [1, N, M]
        if evidence is not None:
            logp, missing = evidence
            at = self._node_log_probs(logp, n.id)[:, :, None] + self._node_log_probs(logp, m.id)[:, None, :]
            full = torch.where(missing[:, n.var, None, None], full, at)
        return full, torch.ones_like(full)

    def _product_gram(self, matched, gram) -> Signed:
        la: torch.Tensor | int = 0
        sg: torch.Tensor | int = 1
        for c, d, rows_a, rows_b in matched:
            gl, gs = gram[(c, d)]
            if rows_a is not None:
                ra = rows_a.to(gl.device)
                gl, gs = gl[:, ra], gs[:, ra]
            if rows_b is not None:
                rb = rows_b.to(gl.device)
                gl, gs = gl[:, :, rb], gs[:, :, rb]
            la, sg = la + gl, sg * gs
        return la, sg  # type: ignore[return-value]

    def _sum_gram(self, n, m, gram, flat) -> Signed:
        wa, ka = self._as_sum(n, flat)
        wb, kb = self._as_sum(m, flat)
        if len(ka) == 1 and len(kb) == 1:
            la, sg = gram[(ka[0], kb[0])]
        else:
            blocks = [[gram[(c, d)] for d in kb] for c in ka]  # the children pairs' Grams, [B, Ka, Kb]
            la = torch.cat([torch.cat([g[0] for g in r], 2) for r in blocks], 1)
            sg = torch.cat([torch.cat([g[1] for g in r], 2) for r in blocks], 1)
        return _signed_combine(la, sg, lambda e: wa @ e @ wb.t(), (1, 2))

    def _as_sum(self, n, flat) -> tuple[torch.Tensor, tuple[int, ...]]:
        """(weights, children); a non-sum is a sum of itself with the identity for weights."""
        if isinstance(n, SumNode):
            return self.weights(n, flat), n.children
        return torch.eye(n.size, dtype=flat.dtype, device=flat.device), (n.id,)

    # -- the density ---------------------------------------------------------------------------
    def log_norm(self) -> torch.Tensor:
        """log Z: the integral of c^2 (squared), of c (a signed circuit read as is), 0 for the
        monotone baseline (normalised by its softmax weights and inputs)."""
        if self.squared:
            return self.log_gram()[0]
        ref = self.program.weights
        if self.raw_weights:
            everything = torch.full((1, self.circuit.num_vars), float("nan"), dtype=ref.dtype, device=ref.device)
            return self.signed_values(everything)[0][0]
        return torch.zeros((), dtype=ref.dtype, device=ref.device)

    def log_prob(self, x: torch.Tensor, log_z: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x) [B]; missing values integrated out (the marginal). `log_z`: log_norm(),
        when the caller has it already (it depends on the parameters only)."""
        logp, missing = self._inputs(x)
        log_z = self.log_norm() if log_z is None else log_z
        if not self.squared:
            return self.program.root_values(logp)[0] - log_z
        if bool(missing.any()):
            return self._gram((logp, missing), None) - log_z
        return 2 * self.program.root_values(logp)[0] - log_z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.log_prob(x)
