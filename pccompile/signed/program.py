"""SignedProgram: a signed circuit lowered to the compiler's Program and evaluated layer by layer
in signed log space with torch, holding its parameters in the runtime's flat layout.

The Program is the one the compiled backends run (passes.lower: layer, pack), read through the
same ProgramTensors: input partitions first, then alternating product and sum partitions. Next
to the buffer of log-magnitudes [rows, B] runs one of signs. A product partition adds its
factor rows' log-magnitudes and multiplies their signs; a sum partition gathers its children
[g, K, B], shifts each group and sample by the largest log-magnitude, multiplies the signed
exponentials by the signed weights [g, G, K] (one batched matrix product) and takes log| |
and the sign of the result. Unfused (every row is kept). The forward pass runs in float32 on
the Triton kernels of codegen/triton/signed.py on CUDA, on the CPU target's signed C kernels
(codegen/cpu/kernels/signed.c) on the CPU where they build, on torch otherwise or for float64
(`target`: auto, cpu, triton or torch); the backward pass is torch's.

Parameters: the flat sum weights (raw, any sign; for a monotone circuit read as is, logits of a
per-row softmax) and the input partitions' runtime tensors (the families' own: categorical
logits, Bernoulli logit, Gaussian mean and log-std). `node_weights` and `input_params` give
one IR node's slice of them, which the Gram recursion of circuit.py uses, so both paths share
one set of parameters."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pccompile.codegen.layers import ProgramTensors
from pccompile.codegen.layers.children import gather_rows
from pccompile.codegen.layers.inputs import partition_log_probs
from pccompile.ir import FIRST_ROW, ZERO_ROW, ArgumentError, Circuit, SumNode
from pccompile.passes import lower
from pccompile.runtime.batch import encode_batch
from pccompile.runtime.params import SumRows, input_params_from_circuit


def _flat_weights(circuit: Circuit, program, signed: bool) -> np.ndarray:
    """The sums' weights in Program order: as stored (signed), or their logs (softmax logits)."""
    flat = np.zeros(program.num_sum_params)
    for lay in program.sum_layout:
        w = np.asarray(circuit.params[lay.node]["weights"], np.float64)
        vals = w.reshape(-1) if lay.mask is None else w[np.asarray(lay.mask, bool)]
        if not signed:
            vals = np.log(np.maximum(vals, 1e-30))
        flat[lay.offset : lay.offset + vals.size] = vals
    return flat


class SignedProgram(nn.Module):
    poison = False  # tests: fill every row a layer writes with NaN first (a row left unwritten shows)

    def __init__(self, circuit: Circuit, *, signed: bool, dtype: torch.dtype, target: str = "auto"):
        super().__init__()
        if target not in ("auto", "cpu", "triton", "torch"):
            raise ArgumentError(f"target must be auto, cpu, triton or torch, got {target!r}")
        self.circuit, self.signed, self.target = circuit, signed, target
        self.program = program = lower(circuit)
        self.tensors = ProgramTensors(program)
        self.weights = nn.Parameter(torch.as_tensor(_flat_weights(circuit, program, signed), dtype=dtype))
        self.rows = SumRows(program)
        inputs, _ = input_params_from_circuit(circuit, program)
        self.inputs = nn.ModuleList(
            nn.ParameterDict({k: nn.Parameter(torch.as_tensor(v, dtype=dtype)) for k, v in p.items()}) for p in inputs
        )
        self.sum_at = {lay.node: lay for lay in program.sum_layout}
        self.input_at = {lay.node: lay for lay in program.input_layout}
        self.dtype = dtype
        self._indices: dict[str, tuple] = {}
        self._masks: dict[int, tuple[torch.Tensor, int]] = {}  # a masked sum's edges and their count

    def _apply(self, fn, *args, **kwargs):
        """Moving the module (`.to`) drops the kept index tensors: they are made again on the
        new device."""
        self._indices.clear()
        self._masks.clear()
        return super()._apply(fn, *args, **kwargs)

    # -- parameters ----------------------------------------------------------------------------
    def flat_weights(self) -> torch.Tensor:
        """[P] the weights the sums use: raw, or the per-row softmax of the logits."""
        return self.weights if self.signed else self.rows.log_softmax(self.weights).exp()

    def node_weights(self, n: SumNode, flat: torch.Tensor) -> torch.Tensor:
        """[size, width] weights of one IR sum node (its tie source's), zero off its mask."""
        lay = self.sum_at[self.circuit.param_source(n).id]
        if lay.mask is None:
            return flat[lay.offset : lay.offset + lay.size * lay.width].view(lay.size, lay.width)
        if lay.node not in self._masks:
            mask = np.asarray(lay.mask, bool)
            self._masks[lay.node] = (torch.as_tensor(mask, device=flat.device), int(mask.sum()))
        mask, count = self._masks[lay.node]
        vals = flat[lay.offset : lay.offset + count]
        return torch.zeros(lay.size, lay.width, dtype=flat.dtype, device=flat.device).masked_scatter(mask, vals)

    def input_params(self, node_id: int) -> dict[str, torch.Tensor]:
        """One IR input node's rows of its partition's runtime tensors."""
        lay = self.input_at[node_id]
        return {k: v[lay.start : lay.start + lay.size] for k, v in self.inputs[lay.partition].items()}

    # -- evaluation ------------------------------------------------------------------------------
    def encode(self, x: torch.Tensor):
        """(x_int, x_real) as the runtime encodes a batch; a bad value names its variable."""
        return encode_batch(
            x, self.program.var_cats, self.program.var_names, device=self.weights.device, dtype=self.dtype
        )

    def input_log_probs(self, x_int, x_real) -> torch.Tensor:
        """[R_in, B] log-densities of every input row (0 where the value is missing)."""
        parts = [
            partition_log_probs(part, dict(self.inputs[k]), self.tensors.input_vars(k), x_int, x_real)
            for k, part in enumerate(self.program.input_partitions)
        ]
        return torch.cat(parts, 0)

    def root_values(self, input_logp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log|c|, sign c) [B] at the root, from the input rows' log-values; differentiable in
        both the input log-values and the weights (a hand-written backward: see _SignedPass)."""
        return _SignedPass.apply(input_logp, self.flat_weights(), self)

    def _kernels(self, t: torch.Tensor):
        """The layer kernels that run this pass, a function (key, kind, mags, signs, w_ext), or
        None for the torch ops: the Triton kernels on CUDA (or when asked for: under
        TRITON_INTERPRET=1 they run on the CPU), the CPU target's C kernels for float32 on the
        CPU where they build; target="torch" turns both off."""
        if self.target == "torch" or t.dtype != torch.float32:
            return None
        if self.target == "triton" or (self.target == "auto" and t.device.type == "cuda"):
            from pccompile.codegen.triton.signed import signed_layer

            def run_triton(key, kind, mags, signs, w_ext):
                rows, child, pids = self.c_indices(key)
                signed_layer(kind, rows, child, None if pids is None else w_ext[pids].contiguous(), mags, signs)

            return run_triton
        if t.device.type != "cpu":
            return None
        from pccompile.codegen.cpu.build import build_error, load_library

        if build_error() is not None:
            if self.target == "cpu":
                raise RuntimeError(f"target 'cpu': {build_error()}")
            return None
        lib = load_library()
        return lambda key, kind, mags, signs, w_ext: _c_layer(lib, self, key, kind, mags, signs, w_ext)

    def c_indices(self, key: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(output rows, child rows, weight ids or None) of a partition, contiguous, kept: what
        every pass reads of a partition and does not change between passes."""
        got = self._indices.get(key)
        if got is None:
            rows, child, pids = self.tensors.part(key)
            got = (rows.contiguous(), child.contiguous(), None if pids is None else pids.contiguous())
            self._indices[key] = got
        return got

    @torch.no_grad()
    def values(self, input_logp: torch.Tensor, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log-magnitudes, signs) [rows, B] of every row."""
        pt, B = self.tensors, input_logp.shape[1]
        mags = pt.start_mars(input_logp.contiguous())
        signs = torch.ones_like(mags)
        signs[ZERO_ROW] = 0.0
        if self.poison:
            mags[FIRST_ROW + pt.num_inputs :] = float("nan")
            signs[FIRST_ROW + pt.num_inputs :] = float("nan")
        w_ext = torch.cat([flat, flat.new_zeros(1)])  # the padding slot: weight 0
        kernels = self._kernels(mags)
        for kind, keys in pt.layer_specs:
            for key in keys:
                _, child, pids = self.c_indices(key)
                if kernels is not None:
                    kernels(key, kind, mags, signs, w_ext)
                    continue
                if kind == "product":
                    pt.write(mags, key, pt.product(mags, child))
                    pt.write(signs, key, gather_rows(signs, child).prod(1))
                    continue
                top, e = _shifted_children(mags, signs, child)
                total = torch.bmm(w_ext[pids], e)  # [g, G, B]
                pt.write(mags, key, (total.abs().log() + top).reshape(-1, B))
                pt.write(signs, key, torch.sign(total).reshape(-1, B))
        return mags, signs

    @torch.no_grad()
    def backward(self, mags, signs, flat, grad_root: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradients of sum_b grad_root[b] log|c(x_b)| w.r.t. the input rows' log-values and
        the flat weights. With F_n the derivative w.r.t. log|v_n| (the flow: F_root =
        grad_root), a product passes F_n to each factor, a sum passes w_k v_k F_n / v_n down
        edge k and gives F_n v_k / v_n to its weight; v_k / v_n = s_k s_n exp(l_k - l_n)."""
        pt, B = self.tensors, mags.shape[1]
        flows = torch.zeros_like(mags)
        flows[pt.root_row] = grad_root
        grad_w = flat.new_zeros(flat.shape[0] + 1)
        w_ext = torch.cat([flat, flat.new_zeros(1)])
        for kind, keys in reversed(pt.layer_specs):
            for key in reversed(keys):
                _, child, pids = self.c_indices(key)
                f = pt.read(flows, key)
                if kind == "product":
                    f = f.clone()  # a view of the rows index_add_ writes into
                    for c in range(child.shape[1]):
                        flows.index_add_(0, child[:, c], f)
                    continue
                g, G, _ = pids.shape
                top, e = _shifted_children(mags, signs, child)  # [g, 1, B], [g, K, B]
                lm = pt.read(mags, key).view(g, G, B)
                down = f.view(g, G, B) * pt.read(signs, key).view(g, G, B) * (top - lm).exp()
                down = torch.where(f.view(g, G, B) == 0, torch.zeros_like(down), down)  # no 0 * inf
                w = w_ext[pids]
                flows.index_add_(0, child.reshape(-1), (torch.bmm(w.transpose(1, 2), down) * e).reshape(-1, B))
                grad_w.index_add_(0, pids.reshape(-1), torch.bmm(down, e.transpose(1, 2)).reshape(-1))
        first = FIRST_ROW
        return flows[first : first + pt.num_inputs], grad_w[:-1]


def _c_layer(lib, prog: SignedProgram, key: str, kind: str, mags, signs, w_ext) -> None:
    """One partition by the CPU target's signed kernels (codegen/cpu/kernels/signed.c)."""
    rows, child, pids = prog.c_indices(key)
    B, threads = mags.shape[1], torch.get_num_threads()
    ptrs = (mags.data_ptr(), signs.data_ptr())
    if kind == "product":
        m, F = child.shape
        lib.pc_signed_product_forward(*ptrs, B, m, F, child.data_ptr(), rows.data_ptr(), threads)
        return
    w = w_ext[pids].contiguous()
    g, G, K = pids.shape
    lib.pc_signed_sum_forward(*ptrs, B, g, G, K, child.data_ptr(), rows.data_ptr(), w.data_ptr(), threads)


def _shifted_children(mags, signs, child) -> tuple[torch.Tensor, torch.Tensor]:
    """A sum partition's children [g, K, B]: (their max log-magnitude per group and sample, 0
    where all are -inf; their signed exponentials after the shift)."""
    lm, sg = gather_rows(mags, child), gather_rows(signs, child)
    top = lm.amax(1, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    return top, sg * (lm - top).exp()


class _SignedPass(torch.autograd.Function):
    """The forward pass without autograd's bookkeeping (in-place writes into one buffer would
    make it copy the buffer per layer), and SignedProgram.backward for the gradients."""

    @staticmethod
    def forward(ctx, input_logp, flat, prog: SignedProgram):
        mags, signs = prog.values(input_logp, flat)
        ctx.save_for_backward(flat, mags, signs)
        ctx.prog = prog
        root = prog.tensors.root_row
        sign = signs[root].clone()
        ctx.mark_non_differentiable(sign)
        return mags[root].clone(), sign

    @staticmethod
    def backward(ctx, grad_mag, grad_sign):
        flat, mags, signs = ctx.saved_tensors
        grad_in, grad_w = ctx.prog.backward(mags, signs, flat, grad_mag)
        return grad_in, grad_w, None
