"""Executes a Program with plain torch ops: the reference backend and the CPU default.

Layout: `mars [num_rows, B]` holds log-values. A sum partition is evaluated as a batched matrix
product in linear space after subtracting, per group and sample, the max over the group's
children: out = m + log(W @ exp(c - m)). When that underflows for a node (all its weight sits on
children far below the group max), the node is recomputed exactly in log space, so no finite
value becomes -inf. The backward pass produces node flows (the gradient of the output w.r.t.
each row) and parameter flows (gradient w.r.t. each log-weight) in the same factored form.
"""

from __future__ import annotations

import torch
from torch import nn

from pccompile.ir import ONE_ROW, ZERO_ROW, FIRST_ROW, Program


def _tiny(dtype: torch.dtype) -> float:
    return float(torch.finfo(dtype).tiny) * 1e8


class TorchExecutor(nn.Module):
    """Holds the Program's index arrays as (non-persistent) buffers so `.to(device)` moves them."""

    def __init__(self, program: Program):
        super().__init__()
        self.program = program
        self.num_rows = program.num_rows
        self.root_row = program.root_row  # in Program order (decoding, complete passes)
        self.out_row = program.root_row  # the root's row in buffers from forward_mars / backward_flows
        self.num_inputs = sum(p.size for p in program.input_partitions)
        self.num_params = program.num_sum_params
        self.layer_specs: list[tuple[str, list[str]]] = []
        for li, layer in enumerate(program.layers[1:], start=1):
            names = []
            for pi, part in enumerate(layer.partitions):
                key = f"l{li}p{pi}"
                self.register_buffer(key + "_rows", torch.as_tensor(part.rows.reshape(-1)), persistent=False)
                self.register_buffer(key + "_child", torch.as_tensor(part.child_rows), persistent=False)
                if layer.kind == "sum" and part.dense:
                    self.register_buffer(key + "_pstart", torch.as_tensor(part.param_start), persistent=False)
                    self.register_buffer(key + "_fanin", torch.as_tensor(part.fanin), persistent=False)
                elif layer.kind == "sum":
                    self.register_buffer(key + "_pid", torch.as_tensor(part.param_ids), persistent=False)
                names.append(key)
            self.layer_specs.append((layer.kind, names))

    def _part(self, key: str):
        """(rows, child rows, parameter ids or None for products) of one partition."""
        rows, child = getattr(self, key + "_rows"), getattr(self, key + "_child")
        if hasattr(self, key + "_pid"):
            return rows, child, getattr(self, key + "_pid")
        if not hasattr(self, key + "_pstart"):
            return rows, child, None
        start, fan = getattr(self, key + "_pstart"), getattr(self, key + "_fanin")
        G = rows.shape[0] // start.shape[0]
        k = torch.arange(child.shape[1], device=rows.device)
        ids = start[:, None, None] + torch.arange(G, device=rows.device)[None, :, None] * fan[:, None, None] + k
        return rows, child, torch.where(k < fan[:, None, None], ids, self.num_params)

    # -- buffers ---------------------------------------------------------------------------
    def start_mars(self, input_logp: torch.Tensor) -> torch.Tensor:
        """A fresh [num_rows, B] buffer with the padding rows and the input rows filled in."""
        mars = torch.empty(self.num_rows, input_logp.shape[1], dtype=input_logp.dtype, device=input_logp.device)
        mars[ZERO_ROW] = float("-inf")
        mars[ONE_ROW] = 0.0
        mars[FIRST_ROW:FIRST_ROW + self.num_inputs] = input_logp
        return mars

    def extend_logw(self, logw: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """log-weights plus the padding slot (index P, weight 0); already there when the runtime
        passes them padded ([P + 1], see CompiledCircuit.sum_log_weights)."""
        if logw.shape[0] == self.num_params + 1:
            return logw.to(dtype).contiguous()
        return torch.cat([logw.to(dtype), logw.new_full((1,), float("-inf"), dtype=dtype)]).contiguous()

    # -- forward ---------------------------------------------------------------------------
    def forward_mars(self, input_logp: torch.Tensor, logw: torch.Tensor, complete: bool = True) -> torch.Tensor:
        """input_logp [R_in, B], logw [P] normalised log-weights -> mars [num_rows, B].
        (`complete`: every row is written; backends that fuse may skip rows unless asked.)"""
        B = input_logp.shape[1]
        mars = self.start_mars(input_logp)
        logw_ext = self.extend_logw(logw, mars.dtype)
        for kind, keys in self.layer_specs:
            for key in keys:
                rows, child, pid = self._part(key)
                if kind == "product":
                    mars[rows] = mars[child].sum(1)
                else:
                    mars[rows] = self._sum_forward(mars, child, pid, logw_ext).reshape(rows.shape[0], B)
        return mars

    @staticmethod
    def _group_terms(mars, child, pid, logw_ext):
        """Child values c [g, K, B], their group max m [g, 1, B] (0 where all are -inf), the
        shifted exponentials e = exp(c - m) and the weights w [g, G, K]."""
        c = mars[child]
        m = c.amax(1, keepdim=True)
        m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
        return c, m, (c - m).exp(), logw_ext[pid].exp()

    def _sum_forward(self, mars, child, pid, logw_ext):
        c, m, e, w = self._group_terms(mars, child, pid, logw_ext)
        s = torch.bmm(w, e)  # [g, G, B]
        out = s.log() + m
        bad = s < _tiny(s.dtype)
        if bad.any():
            gi, i, b = bad.nonzero(as_tuple=True)
            total = logw_ext[pid[gi, i]] + c[gi, :, b]
            out[gi, i, b] = torch.logsumexp(total, 1)
        return out

    def forward_max(self, input_logp: torch.Tensor, logw: torch.Tensor) -> torch.Tensor:
        """Max-product values of every row (sums take the max of log w + child)."""
        from .topdown import forward_max
        return forward_max(self, input_logp, logw)

    def em_sum_update(self, logits, logw, flows, rows, step: float, pseudocount: float):
        """EM M-step for the sum weights, written into `logits` (rows: the runtime's SumRows)."""
        rows.em_update(logits, logw, flows, step, pseudocount)

    # -- backward (flows) ------------------------------------------------------------------
    def backward_flows(self, mars: torch.Tensor, logw: torch.Tensor, grad_root: torch.Tensor):
        """Top-down pass. grad_root [B] is the flow of the root (1 for plain flows).

        Returns (flows [num_rows, B], param_flows [P]): flows[r, b] = d out_b / d mars[r, b]
        times grad_root[b]; param_flows[p] = sum_b d out_b / d logw[p] times grad_root[b]."""
        flows = torch.zeros_like(mars)
        flows[self.root_row] = grad_root.to(mars.dtype)
        logw_ext = self.extend_logw(logw, mars.dtype)
        grad_logw = torch.zeros(logw_ext.shape[0], dtype=mars.dtype, device=mars.device)
        for kind, keys in reversed(self.layer_specs):
            for key in reversed(keys):
                rows, child, pid = self._part(key)
                if kind == "product":
                    f = flows[rows]  # [m, B]
                    F = child.shape[1]
                    flows.index_add_(0, child.reshape(-1), f.unsqueeze(1).expand(-1, F, -1).reshape(-1, f.shape[1]))
                else:
                    self._sum_backward(mars, flows, grad_logw, rows, child, pid, logw_ext)
        flows[ZERO_ROW] = 0
        flows[ONE_ROW] = 0
        return flows, grad_logw[:-1]

    def _sum_backward(self, mars, flows, grad_logw, rows, child, pid, logw_ext):
        g, G, K = pid.shape
        B = mars.shape[1]
        f = flows[rows].reshape(g, G, B)
        if not bool((f != 0).any()):
            return
        c, m, e, w = self._group_terms(mars, child, pid, logw_ext)
        s = torch.bmm(w, e)
        n = mars[rows].reshape(g, G, B)
        small = s < _tiny(s.dtype)
        a = torch.where(small, torch.zeros_like(s), f / torch.where(small, torch.ones_like(s), s))
        flows.index_add_(0, child.reshape(-1), (e * torch.bmm(w.transpose(1, 2), a)).reshape(-1, B))
        grad_logw.index_add_(0, pid.reshape(-1), (w * torch.bmm(a, e.transpose(1, 2))).reshape(-1))
        bad = small & torch.isfinite(n) & (f != 0)
        if bad.any():
            gi, i, b = bad.nonzero(as_tuple=True)
            total = logw_ext[pid[gi, i]] + c[gi, :, b]  # [nbad, K]
            ef = f[gi, i, b].unsqueeze(1) * (total - n[gi, i, b].unsqueeze(1)).exp()
            flows.index_put_((child[gi], b.unsqueeze(1).expand(-1, K)), ef, accumulate=True)
            grad_logw.index_add_(0, pid[gi, i].reshape(-1), ef.reshape(-1))


class CircuitLogLikelihood(torch.autograd.Function):
    """log p(x) with our own backward: gradients are the circuit flows."""

    @staticmethod
    def forward(ctx, input_logp, logw, executor: TorchExecutor):
        mars = executor.forward_mars(input_logp.detach(), logw.detach())
        ctx.executor = executor
        ctx.save_for_backward(mars, logw)
        return mars[executor.out_row].clone()

    @staticmethod
    def backward(ctx, grad):
        mars, logw = ctx.saved_tensors
        ex: TorchExecutor = ctx.executor
        flows, grad_logw = ex.backward_flows(mars, logw.detach(), grad)
        grad_in = flows[FIRST_ROW:FIRST_ROW + ex.num_inputs]
        if logw.shape[0] == grad_logw.shape[0] + 1:  # padded log-weights: the slot gets no gradient
            grad_logw = torch.cat([grad_logw, grad_logw.new_zeros(1)])
        return grad_in, grad_logw.to(logw.dtype), None
