"""Conversion between IR parameters (probabilities, per node) and the runtime's unconstrained,
flat tensors (log-weights per Program layout; logits / log-std per input partition)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pccompile.ir import Circuit, Program, family
from pccompile.ir.distributions import log_array
from pccompile.ir.families.maxent import entropic_probs, row_sum_last, segment_rows


def sum_logits_from_circuit(circuit: Circuit, program: Program, dtype=np.float64):
    """Flat log-weights in Program order (`dtype` float32 halves staging memory and time), and the
    (offset, count) ranges of nodes without parameters, left for the runtime to draw."""
    flat = np.zeros(program.num_sum_params, dtype=dtype)
    missing = []
    for lay in program.sum_layout:
        nnz = lay.size * lay.width if lay.mask is None else int(np.count_nonzero(lay.mask))
        if lay.node not in circuit.params:
            missing.append((lay.offset, nnz))
            continue
        w = np.asarray(circuit.params[lay.node]["weights"])
        vals = w.reshape(-1) if lay.mask is None else w[np.asarray(lay.mask, bool)]
        flat[lay.offset : lay.offset + nnz] = log_array(vals, dtype)
    return flat, missing


def input_params_from_circuit(circuit: Circuit, program: Program, dtype=np.float64):
    """Per input partition, its parameter arrays; and the (partition, first row, rows) ranges of
    input nodes without parameters, left for the runtime to draw."""
    out = [family(part.dist).runtime_empty(part, dtype) for part in program.input_partitions]
    missing = []
    for lay in program.input_layout:
        if lay.node not in circuit.params:
            missing.append((lay.partition, lay.start, lay.size))
            continue
        part = program.input_partitions[lay.partition]
        family(part.dist).runtime_from_ir(
            circuit.params[lay.node], out[lay.partition], slice(lay.start, lay.start + lay.size), dtype
        )
    return out, missing


def _merge(ranges):
    """Coalesce adjacent (key..., start, count) ranges so large draws happen in one call."""
    out = []
    for r in sorted(ranges):
        *key, start, n = r
        if out and out[-1][:-2] == tuple(key) and out[-1][-2] + out[-1][-1] == start:
            out[-1] = (*key, out[-1][-2], out[-1][-1] + n)
        else:
            out.append((*key, start, n))
    return out


@torch.no_grad()
def draw_missing(sum_logits: torch.Tensor, inputs, partitions, sum_missing, input_missing, seed: int) -> None:
    """Initial parameters for nodes the source left without, drawn in place, in log space, on the
    tensors' own device with a seeded generator there (so a GPU draws its own; values depend on
    seed and device). Same distributions as the `init` pass: weights proportional to U(0.6, 1.4),
    categorical logits -k U(0, 1), Bernoulli p ~ U(0.2, 0.8), Gaussian means N(0, 1)
    with unit std. Unnormalised log-weights are fine: the runtime normalises per node."""
    gen = torch.Generator(device=sum_logits.device).manual_seed(int(seed))
    for off, n in _merge(sum_missing):
        sum_logits[off : off + n].uniform_(0.6, 1.4, generator=gen).log_()
    for pi, start, n in _merge(input_missing):
        family(partitions[pi].dist).runtime_draw(inputs[pi], slice(start, start + n), gen)


def segment_log_softmax(logits: torch.Tensor, segment: torch.Tensor, num_segments: int) -> torch.Tensor:
    """log-softmax of `logits` within each segment (one segment = one sum node's row)."""
    m = torch.full((num_segments,), float("-inf"), dtype=logits.dtype, device=logits.device)
    m = m.scatter_reduce(0, segment, logits.detach(), reduce="amax")
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    shifted = logits - m[segment]
    z = torch.zeros(num_segments, dtype=logits.dtype, device=logits.device).index_add(0, segment, shifted.exp())
    return shifted - z.log()[segment]


class SumRows(nn.Module):
    """The normalisation rows of the flat sum weights (see Program.dense_blocks): dense blocks are
    reshaped to [rows, width], so they need no index arrays; the masked tail uses segment ids."""

    def __init__(self, program: Program):
        super().__init__()
        self.blocks = list(program.dense_blocks)
        self.tail_start = program.tail_start
        self.tail_rows = program.tail_rows
        self.register_buffer("tail_segment", torch.as_tensor(program.tail_segment), persistent=False)
        deg = np.bincount(program.tail_segment, minlength=self.tail_rows) if self.tail_rows else np.zeros(0)
        self.register_buffer(
            "tail_degree", torch.as_tensor(deg[program.tail_segment], dtype=torch.float32), persistent=False
        )  # fan-in of each tail weight's row

    def log_softmax(self, logits: torch.Tensor, padded: bool = False) -> torch.Tensor:
        """Per-row normalised log-weights [P]; `padded` appends the kernels' padding slot (-inf)
        so executors need not copy them again. Without autograd, each dense block is written in
        place into one buffer (one read and one write of the weights in all)."""
        P = logits.shape[0]
        if logits.requires_grad and torch.is_grad_enabled():
            parts = [logits[a:b].view(-1, k).log_softmax(-1).reshape(-1) for a, b, k in self.blocks]
            if self.tail_rows:
                parts.append(segment_log_softmax(logits[self.tail_start :], self.tail_segment, self.tail_rows))
            if padded:
                parts.append(logits.new_full((1,), float("-inf")))
            return torch.cat(parts) if len(parts) > 1 else (parts[0] if parts else logits)
        out = torch.empty(P + int(padded), dtype=logits.dtype, device=logits.device)
        for a, b, k in self.blocks:
            torch.log_softmax(logits[a:b].view(-1, k), -1, out=out[a:b].view(-1, k))
        if self.tail_rows:
            out[self.tail_start : P] = segment_log_softmax(logits[self.tail_start :], self.tail_segment, self.tail_rows)
        if padded:
            out[P] = float("-inf")
        return out

    def row_totals(self, values: torch.Tensor) -> torch.Tensor:
        """Sum of `values` [P] over each row: [rows] (dense blocks first, then the tail)."""
        parts = [values[a:b].view(-1, k).sum(-1) for a, b, k in self.blocks]
        if self.tail_rows:
            parts.append(
                torch.zeros(self.tail_rows, dtype=values.dtype, device=values.device).index_add_(
                    0, self.tail_segment, values[self.tail_start :]
                )
            )
        return torch.cat(parts) if parts else values[:0]

    def em_update(
        self, logits, logw, flows, step, pseudocount: float, blocks: bool = True, entropy: torch.Tensor | None = None
    ) -> None:
        """theta <- (1 - a) theta + a (F + pc/deg) / (F_row + pc), written into `logits` as logs.
        `step` is a float or a device scalar tensor. `blocks=False` leaves the dense blocks to a
        fused kernel and updates only the tail. `entropy` [P]: per weight, a share of its row's
        entropy weight b (their row sum; learn.regularize gives the reach pass's flows): the new
        theta maximises sum (F + pc/deg) log theta + b H(theta) instead (pccompile.ir.families.maxent)."""

        def upd(old, f, row, deg, b, row_sum):
            if b is not None:
                new = entropic_probs(f + pseudocount / deg, b, row_sum).to(old.dtype)
            else:
                denom = row + pseudocount
                new = torch.where(denom > 0, (f + pseudocount / deg) / denom.clamp_min(1e-300), old)
            return ((1 - step) * old + step * new).clamp_min(0).log()

        if blocks:
            for a, b, k in self.blocks:
                f = flows[a:b].view(-1, k)
                ent = None if entropy is None else entropy[a:b].view(-1, k).sum(-1, keepdim=True)
                new = upd(logw[a:b].view(-1, k).exp(), f, f.sum(-1, keepdim=True), k, ent, row_sum_last)
                logits[a:b] = new.reshape(-1)
        if self.tail_rows:
            t = self.tail_start
            seg = self.tail_segment
            f = flows[t:]
            row = torch.zeros(self.tail_rows, dtype=f.dtype, device=f.device).index_add_(0, seg, f)
            tail_sum = segment_rows(seg, self.tail_rows)
            ent = None if entropy is None else tail_sum(entropy[t:])
            logits[t:] = upd(logw[t:].exp(), f, row[seg], self.tail_degree.to(f.dtype), ent, tail_sum)


def circuit_params_from_runtime(
    circuit: Circuit, program: Program, logw: np.ndarray, inputs: list[dict[str, np.ndarray]]
) -> dict[int, dict[str, np.ndarray]]:
    """Normalised runtime parameters back into per-node IR arrays (probabilities)."""
    params: dict[int, dict[str, np.ndarray]] = {}
    for lay in program.sum_layout:
        mask = np.ones((lay.size, lay.width), bool) if lay.mask is None else np.asarray(lay.mask, bool)
        w = np.zeros((lay.size, lay.width), dtype=np.float64)
        w[mask] = np.exp(logw[lay.offset : lay.offset + int(mask.sum())])
        w /= w.sum(1, keepdims=True)
        params[lay.node] = {"weights": w.astype(np.float32)}
    for lay in program.input_layout:
        part = program.input_partitions[lay.partition]
        src = inputs[lay.partition]
        params[lay.node] = family(part.dist).runtime_to_ir(src, slice(lay.start, lay.start + lay.size))
    return params
