"""Executes a Program with plain torch ops: the reference backend and the CPU default.

Layout: `mars [num_rows, B]` holds log-values. A sum partition is evaluated as a batched matrix
product in linear space after subtracting, per group and sample, the max over the group's
children: out = m + log(W @ exp(c - m)). When that underflows for a node (all its weight sits on
children far below the group max), the node is recomputed exactly in log space, so no finite
value becomes -inf. The backward pass produces node flows (the gradient of the output w.r.t.
each row) and parameter flows (gradient w.r.t. each log-weight) in the same factored form.

Fusion (codegen.fusion): passes that need not return every row (`complete=False`: likelihoods,
flows, the autograd path) run over a buffer without the product layers that only the next sum
layer reads; those sums form their children from the products' factors (torch_backend.children),
so the products are never stored, nor their flows. `complete=True` runs the unfused Program
order, which sampling and MPE decoding read.
"""

from __future__ import annotations

import torch
from pccompile.ir import FIRST_ROW, ONE_ROW, ZERO_ROW, Program
from torch import nn

from ..executor import ProgramOrderDecoder
from ..fusion import plan_fusion
from ..layers import ProgramTensors
from ..layers.inputs import partition_log_probs


def _tiny(dtype: torch.dtype) -> float:
    return float(torch.finfo(dtype).tiny) * 1e8


def _underflows(s: torch.Tensor) -> bool:
    """Whether any linear-space sum is below _tiny (one reduction: cheaper than a mask)."""
    return s.numel() > 0 and bool(s.amin() < _tiny(s.dtype))


class TorchExecutor(ProgramOrderDecoder, nn.Module):
    """The torch backend's Executor (codegen.executor): plain torch ops over ProgramTensors.
    `poison`: fill every value buffer with NaN before a pass writes it (tests: a row read before
    it is written, or never written, shows up)."""

    poison = False

    def __init__(self, program: Program, fuse: bool = True):
        super().__init__()
        self.program = program
        self.tensors = ProgramTensors(program)  # Program order: complete passes and the decoder
        fused = ProgramTensors(program, plan_fusion(program, fuse))
        self.fused = fused if fused.fused else self.tensors  # what incomplete passes run
        self.root_row = program.root_row
        self.out_row = self.fused.root_row
        self.num_inputs = self.tensors.num_inputs
        self.num_params = program.num_sum_params
        self._workspaces: dict[str, torch.Tensor] = {}  # reusable buffers by purpose (see _workspace)

    def _workspace(self, purpose: str, rows: int, B: int, dtype, device) -> torch.Tensor:
        """A [rows, B] buffer kept between calls for callers that are done with it before the
        next call (reuse=True): as PyJuice keeps its node buffers, it saves allocating and
        first-touching a fresh one each batch (about 15% of a RAT-SPN forward on the CPU). One
        per purpose; a different shape, dtype or device replaces it."""
        buf = self._workspaces.get(purpose)
        if buf is None or buf.shape != (rows, B) or buf.dtype != dtype or buf.device != torch.device(device):
            self._workspaces.pop(purpose, None)  # free the old one before allocating
            buf = self._workspaces[purpose] = torch.empty(rows, B, dtype=dtype, device=device)
        return buf

    # -- forward ---------------------------------------------------------------------------
    def node_values(self, x_int, x_real, inputs, logw, complete: bool = False, reuse: bool = False) -> torch.Tensor:
        """Input log-probabilities (codegen.layers.inputs), written into the buffer's input rows,
        then the layers. `reuse`: into this executor's kept buffer (valid until the next reuse)."""
        pt = self.tensors if complete else self.fused
        B = x_int.shape[0]
        if reuse:
            mars = self._workspace("values" + ("+" if complete else ""), pt.num_rows, B, logw.dtype, x_int.device)
            pt.reset_padding(mars)
        else:
            mars = pt.empty_mars(B, logw.dtype, x_int.device)
        if self.poison:
            pt.reset_padding(mars.fill_(float("nan")))
        row = FIRST_ROW
        for k, (part, p) in enumerate(zip(self.program.input_partitions, inputs)):
            self._input_rows(k, part, p, x_int, x_real, mars[row : row + part.size])
            row += part.size
        return self._layers(pt, mars, logw)

    def input_block(self, part, params: dict, vars_t, x_int, x_real) -> torch.Tensor:
        """[m, B] log-probabilities of one input partition, differentiable in `params`."""
        return partition_log_probs(part, params, vars_t, x_int, x_real)

    def _input_rows(self, k: int, part, params: dict, x_int, x_real, out: torch.Tensor) -> None:
        """Write input partition k's log-probabilities [m, B] into `out` (rows of the buffer)."""
        partition_log_probs(part, params, self.tensors.input_vars(k), x_int, x_real, out=out)

    def forward_mars(self, input_logp: torch.Tensor, logw: torch.Tensor, complete: bool = True) -> torch.Tensor:
        """input_logp [R_in, B], logw [P] normalised log-weights -> mars [rows, B]: every row in
        Program order when `complete`, else the fused buffer (rows of `self.fused`)."""
        pt = self.tensors if complete else self.fused
        mars = pt.start_mars(input_logp)
        if self.poison:
            mars[FIRST_ROW + self.num_inputs :] = float("nan")
        return self._layers(pt, mars, logw)

    def _layers(self, pt: ProgramTensors, mars: torch.Tensor, logw: torch.Tensor) -> torch.Tensor:
        """Every layer of `pt` in order, into mars (its padding and input rows already written)."""
        logw_ext = pt.extend_logw(logw, mars.dtype)
        for kind, keys in pt.layer_specs:
            for key in keys:
                if kind == "product":
                    self._product_layer(pt, key, mars)
                else:
                    self._sum_layer(pt, key, mars, logw_ext)
        return mars

    def _product_layer(self, pt: ProgramTensors, key: str, mars: torch.Tensor) -> None:
        """One product partition's rows of mars: the sums of their factor rows."""
        _, child, _ = pt.part(key)
        pt.write(mars, key, pt.product(mars, child))

    def _sum_layer(self, pt: ProgramTensors, key: str, mars: torch.Tensor, logw_ext: torch.Tensor) -> None:
        """One sum partition's rows of mars (written in place when they are one contiguous span)."""
        span = pt.spans[key]
        out = self._sum_forward(pt, key, mars, logw_ext, None if span is None else mars[span[0] : span[1]])
        if span is None:
            pt.write(mars, key, out.reshape(getattr(pt, key + "_rows").shape[0], mars.shape[1]))

    def _sum_forward(self, pt: ProgramTensors, key: str, mars: torch.Tensor, logw_ext: torch.Tensor, out=None):
        """[g, G, B] values of one sum partition (into `out`, [g * G, B], when given), in
        cache-sized chunks of groups and samples."""
        children, logw = pt.sources[key], pt.log_weights(key, logw_ext)
        w = logw.exp()
        g, G, _ = w.shape
        B = mars.shape[1]
        out = mars.new_empty(g, G, B) if out is None else out.view(g, G, B)
        for gs, bs in _chunks(w.shape, mars):
            view = mars[:, bs]
            m, e = children.terms(view, gs)
            s = torch.bmm(w[gs], e)  # [gc, G, bc]
            bad = s < _tiny(s.dtype) if _underflows(s) else None
            res = s.log_().add_(m)
            if bad is not None:  # the exact log-space path for the few nodes whose sum underflowed
                gi, i, b = bad.nonzero(as_tuple=True)
                gi = gi + gs.start
                res[gi - gs.start, i, b] = torch.logsumexp(logw[gi, i] + children.exact(view, gi, b), 1)
            out[gs, :, bs] = res
        return out

    def forward_max(self, input_logp: torch.Tensor, logw: torch.Tensor) -> torch.Tensor:
        """Max-product values of every row (sums take the max of log w + child)."""
        from ..layers import forward_max

        return forward_max(self.tensors, input_logp, logw)

    def em_dense_blocks(self, logits, logw, flows, step, pseudocount: float) -> bool:
        """No kernel of its own: the runtime's update (SumRows) does every weight."""
        return False

    def em_inputs(self, part, h, stats, step, pseudocount: float) -> bool:
        """No kernel of its own: each family's M-step (Family.m_step) runs."""
        return False

    def input_stats(self, part, vars_t, flows: torch.Tensor, x_int, x_real, deferred: bool = False) -> dict | None:
        """No kernel of its own: each family's statistics (Family.stats) are computed."""
        return None

    # -- backward (flows) ------------------------------------------------------------------
    def backward_flows(self, mars: torch.Tensor, logw: torch.Tensor, grad_root: torch.Tensor, reuse: bool = False):
        """Top-down pass over the fused buffer (mars from an incomplete pass). grad_root [B] is
        the flow of the root (1 for plain flows). `reuse`: flows in the kept buffer.

        Returns (flows [rows, B], param_flows [P]): flows[r, b] = d out_b / d mars[r, b]
        times grad_root[b]; param_flows[p] = sum_b d out_b / d logw[p] times grad_root[b]."""
        pt = self.fused
        flows = self._new_flows(mars, reuse)
        flows[self.out_row] = grad_root.to(mars.dtype)
        logw_ext = pt.extend_logw(logw, mars.dtype)
        grad_logw = torch.zeros(logw_ext.shape[0], dtype=mars.dtype, device=mars.device)
        for kind, keys in reversed(pt.layer_specs):
            for key in reversed(keys):
                if kind == "product":
                    self._product_backward(pt, key, flows)
                else:
                    self._sum_backward(pt, key, mars, flows, grad_logw, logw_ext)
        flows[ZERO_ROW] = 0
        flows[ONE_ROW] = 0
        return flows, grad_logw[:-1]

    def _new_flows(self, mars: torch.Tensor, reuse: bool) -> torch.Tensor:
        """The backward's flows buffer, zeroed: the layers add into it (`reuse`: the kept one)."""
        if reuse:
            return self._workspace("flows", mars.shape[0], mars.shape[1], mars.dtype, mars.device).zero_()
        return torch.zeros_like(mars)

    def _product_backward(self, pt: ProgramTensors, key: str, flows: torch.Tensor) -> None:
        """Each factor row of one product partition gets the product's flow."""
        f = pt.read(flows, key).clone()  # [m, B], apart from the buffer it is added into
        _, child, _ = pt.part(key)
        for c in range(child.shape[1]):
            flows.index_add_(0, child[:, c], f)

    def _sum_backward(self, pt: ProgramTensors, key: str, mars, flows, grad_logw, logw_ext):
        """Flows of one sum partition's children and weights, in the chunks of the forward."""
        children, logw = pt.sources[key], pt.log_weights(key, logw_ext)
        g, G, K = logw.shape
        B = mars.shape[1]
        f, n = pt.read(flows, key).reshape(g, G, B), pt.read(mars, key).reshape(g, G, B)
        if not bool(f.any()):
            return
        w = logw.exp()
        wflows = torch.zeros_like(w)
        for gs, bs in _chunks(w.shape, mars):
            view, fview = mars[:, bs], flows[:, bs]
            m, e = children.terms(view, gs)
            wc, fc = w[gs], f[gs, :, bs]
            s = torch.bmm(wc, e)
            small = s < _tiny(s.dtype) if _underflows(s) else None
            a = fc / s if small is None else (fc / s.clamp_min(_tiny(s.dtype))).masked_fill_(small, 0.0)
            wflows[gs] += wc * torch.bmm(a, e.transpose(1, 2))
            children.scatter(fview, torch.bmm(wc.transpose(1, 2), a).mul_(e), gs)  # child flows
            bad = None if small is None else small & torch.isfinite(n[gs, :, bs]) & (fc != 0)
            if bad is not None and bad.any():
                gi, i, b = bad.nonzero(as_tuple=True)
                gi = gi + gs.start
                total = logw[gi, i] + children.exact(view, gi, b)  # [nbad, K]
                ef = fc[gi - gs.start, i, b].unsqueeze(1) * (total - n[gi, i, b + bs.start].unsqueeze(1)).exp()
                children.scatter_exact(fview, gi, b, ef)
                wflows.index_put_((gi, i), ef, accumulate=True)  # a node may underflow at several samples
        pt.add_weight_flows(key, grad_logw, wflows)


CHUNK_ELEMENTS = 1 << 20  # [groups, K, samples] temporaries per step on the CPU: 4 MB (fp32), cache-sized
PIECE_BUDGET: int | None = None  # a fixed piece size instead of the rule below (benchmarks, tests)


def _chunks(shape: tuple[int, int, int], mars: torch.Tensor) -> list[tuple[slice, slice]]:
    """(groups, samples) slices covering a [g, G, K] sum partition over the batch: on the CPU,
    pieces whose [groups, K, samples] temporaries stay in cache, and within an eighth of the
    value buffer for small circuits, so that they never dominate its memory (one piece on a GPU)."""
    g, _, K = shape
    B = mars.shape[1]
    budget = PIECE_BUDGET or min(CHUNK_ELEMENTS, max(1 << 16, mars.numel() // 8))  # small buffers: smaller
    if mars.device.type != "cpu" or g * K * B <= budget:
        return [(slice(0, g), slice(0, B))]
    if K * B <= budget:
        step = budget // (K * B)
        return [(slice(a, min(g, a + step)), slice(0, B)) for a in range(0, g, step)]
    step = max(16, budget // K)
    return [(slice(a, a + 1), slice(b, min(B, b + step))) for a in range(g) for b in range(0, B, step)]


class CircuitLogLikelihood(torch.autograd.Function):
    """log p(x) with our own backward: gradients are the circuit flows (any Executor). Takes the
    input partitions' log-probabilities as separate blocks, each [m, B]: one block (the usual
    case) goes to the executor as it is, without a concatenated copy."""

    @staticmethod
    def forward(ctx, logw, executor, *parts):
        blocks = [p.detach() for p in parts]
        input_logp = blocks[0] if len(blocks) == 1 else torch.cat(blocks, 0)
        mars = executor.forward_mars(input_logp, logw.detach(), complete=False)
        ctx.executor = executor
        ctx.sizes = [p.shape[0] for p in parts]
        ctx.save_for_backward(mars, logw)
        return mars[executor.out_row].clone()

    @staticmethod
    def backward(ctx, grad):
        mars, logw = ctx.saved_tensors
        ex = ctx.executor
        flows, grad_logw = ex.backward_flows(mars, logw.detach(), grad)
        grad_in = flows[FIRST_ROW : FIRST_ROW + ex.num_inputs].split(ctx.sizes, 0)
        if logw.shape[0] == grad_logw.shape[0] + 1:  # padded log-weights: the slot gets no gradient
            grad_logw = torch.cat([grad_logw, grad_logw.new_zeros(1)])
        return (grad_logw.to(logw.dtype), None, *grad_in)
