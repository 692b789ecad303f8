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
from pccompile.ir import FIRST_ROW, ONE_ROW, ZERO_ROW, Program
from torch import nn

from .inputs import partition_log_probs
from .program_tensors import ProgramTensors


def _tiny(dtype: torch.dtype) -> float:
    return float(torch.finfo(dtype).tiny) * 1e8


class TorchExecutor(nn.Module):
    """The torch backend's Executor (codegen.executor): plain torch ops over ProgramTensors."""

    def __init__(self, program: Program):
        super().__init__()
        self.program = program
        self.tensors = ProgramTensors(program)
        self.root_row = program.root_row
        self.out_row = program.root_row  # torch buffers are in Program order
        self.num_inputs = self.tensors.num_inputs
        self.num_params = program.num_sum_params

    # -- forward ---------------------------------------------------------------------------
    def node_values(self, x_int, x_real, inputs, logw, complete: bool = False) -> torch.Tensor:
        """Input log-probabilities (torch_backend.inputs), then the layers."""
        parts = [
            partition_log_probs(part, p, self.tensors.input_vars(k), x_int, x_real)
            for k, (part, p) in enumerate(zip(self.program.input_partitions, inputs))
        ]
        return self.forward_mars(torch.cat(parts, 0), logw, complete=complete)

    def forward_mars(self, input_logp: torch.Tensor, logw: torch.Tensor, complete: bool = True) -> torch.Tensor:
        """input_logp [R_in, B], logw [P] normalised log-weights -> mars [num_rows, B] (every row
        is written whatever `complete` says: this backend fuses nothing)."""
        B = input_logp.shape[1]
        pt = self.tensors
        mars = pt.start_mars(input_logp)
        logw_ext = pt.extend_logw(logw, mars.dtype)
        for kind, keys in pt.layer_specs:
            for key in keys:
                rows, child, pid = pt.part(key)
                out = pt.product(mars, child) if kind == "product" else self._sum_forward(mars, child, pid, logw_ext)
                pt.write(mars, key, out.reshape(rows.shape[0], B))
        return mars

    @staticmethod
    def _group_terms(mars, child, pid, logw_ext):
        """The group max m [g, 1, B] of the child values (0 where all are -inf), the shifted
        exponentials e = exp(c - m) [g, K, B] and the weights w [g, G, K]. In place on the
        gathered copy: the rare exact path reads the child values again."""
        e = mars[child]
        m = e.amax(1, keepdim=True).nan_to_num_(neginf=0.0)
        return m, e.sub_(m).exp_(), logw_ext[pid].exp()

    def _sum_forward(self, mars, child, pid, logw_ext):
        m, e, w = self._group_terms(mars, child, pid, logw_ext)
        s = torch.bmm(w, e)  # [g, G, B]
        bad = s < _tiny(s.dtype)
        out = s.log_().add_(m)
        if bad.any():
            gi, i, b = bad.nonzero(as_tuple=True)
            total = logw_ext[pid[gi, i]] + mars[child[gi], b.unsqueeze(1)]
            out[gi, i, b] = torch.logsumexp(total, 1)
        return out

    def forward_max(self, input_logp: torch.Tensor, logw: torch.Tensor) -> torch.Tensor:
        """Max-product values of every row (sums take the max of log w + child)."""
        from .topdown import forward_max

        return forward_max(self.tensors, input_logp, logw)

    def em_dense_blocks(self, logits, logw, flows, step, pseudocount: float) -> bool:
        """No kernel of its own: the runtime's update (SumRows) does every weight."""
        return False

    # -- backward (flows) ------------------------------------------------------------------
    def backward_flows(self, mars: torch.Tensor, logw: torch.Tensor, grad_root: torch.Tensor):
        """Top-down pass. grad_root [B] is the flow of the root (1 for plain flows).

        Returns (flows [num_rows, B], param_flows [P]): flows[r, b] = d out_b / d mars[r, b]
        times grad_root[b]; param_flows[p] = sum_b d out_b / d logw[p] times grad_root[b]."""
        pt = self.tensors
        flows = torch.zeros_like(mars)
        flows[self.root_row] = grad_root.to(mars.dtype)
        logw_ext = pt.extend_logw(logw, mars.dtype)
        grad_logw = torch.zeros(logw_ext.shape[0], dtype=mars.dtype, device=mars.device)
        for kind, keys in reversed(pt.layer_specs):
            for key in reversed(keys):
                rows, child, pid = pt.part(key)
                f = pt.read(flows, key)  # [m, B]
                if kind == "product":
                    F = child.shape[1]
                    flows.index_add_(0, child.reshape(-1), f.unsqueeze(1).expand(-1, F, -1).reshape(-1, f.shape[1]))
                else:
                    n = pt.read(mars, key)
                    self._sum_backward(mars, flows, grad_logw, f, n, child, pid, logw_ext)
        flows[ZERO_ROW] = 0
        flows[ONE_ROW] = 0
        return flows, grad_logw[:-1]

    def _sum_backward(self, mars, flows, grad_logw, f, n, child, pid, logw_ext):
        g, G, K = pid.shape
        B = mars.shape[1]
        f, n = f.reshape(g, G, B), n.reshape(g, G, B)
        if not bool((f != 0).any()):
            return
        m, e, w = self._group_terms(mars, child, pid, logw_ext)
        s = torch.bmm(w, e)
        small = s < _tiny(s.dtype)
        a = (f / s.clamp_min(_tiny(s.dtype))).masked_fill_(small, 0.0)
        flows.index_add_(0, child.reshape(-1), (e * torch.bmm(w.transpose(1, 2), a)).reshape(-1, B))
        grad_logw.index_add_(0, pid.reshape(-1), (w * torch.bmm(a, e.transpose(1, 2))).reshape(-1))
        bad = small & torch.isfinite(n) & (f != 0)
        if bad.any():
            gi, i, b = bad.nonzero(as_tuple=True)
            total = logw_ext[pid[gi, i]] + mars[child[gi], b.unsqueeze(1)]  # [nbad, K]
            ef = f[gi, i, b].unsqueeze(1) * (total - n[gi, i, b].unsqueeze(1)).exp()
            flows.index_put_((child[gi], b.unsqueeze(1).expand(-1, K)), ef, accumulate=True)
            grad_logw.index_add_(0, pid[gi, i].reshape(-1), ef.reshape(-1))


class CircuitLogLikelihood(torch.autograd.Function):
    """log p(x) with our own backward: gradients are the circuit flows (any Executor)."""

    @staticmethod
    def forward(ctx, input_logp, logw, executor):
        mars = executor.forward_mars(input_logp.detach(), logw.detach())
        ctx.executor = executor
        ctx.save_for_backward(mars, logw)
        return mars[executor.out_row].clone()

    @staticmethod
    def backward(ctx, grad):
        mars, logw = ctx.saved_tensors
        ex = ctx.executor
        flows, grad_logw = ex.backward_flows(mars, logw.detach(), grad)
        grad_in = flows[FIRST_ROW : FIRST_ROW + ex.num_inputs]
        if logw.shape[0] == grad_logw.shape[0] + 1:  # padded log-weights: the slot gets no gradient
            grad_logw = torch.cat([grad_logw, grad_logw.new_zeros(1)])
        return grad_in, grad_logw.to(logw.dtype), None
