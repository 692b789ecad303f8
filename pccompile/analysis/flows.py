"""Circuit flows: the E-step statistics, and the analysis the pruning pass reads.

For a batch, one forward and one backward pass (root flow 1 per sample) give
- `sum_flows [P]`: aggregate edge flows F_{n,c}(batch) for every sum weight (Program order); by the
  identity F_{n,c}(x) = d log p(x) / d log theta_{c|n} these are gradients w.r.t. log-weights;
- per input partition, the flow of each row per sample, reduced to sufficient statistics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pccompile.ir import family


@dataclass
class FlowStats:
    """Aggregated flows of a batch (or of a whole dataset when accumulated)."""

    sum_flows: torch.Tensor  # [P]
    inputs: list[dict[str, torch.Tensor]]  # per partition: counts [m, K] + missing [m] | gaussian moments
    log_likelihood: torch.Tensor  # 0-d float64 on the model's device: the sum over the rows
    rows: int
    log_weights: torch.Tensor | None = None  # [P + 1] the weights the flows were computed with

    def add_(self, other: "FlowStats") -> "FlowStats":
        self.sum_flows += other.sum_flows
        for a, b in zip(self.inputs, other.inputs):
            for k in a:
                a[k] += b[k]
        self.log_likelihood += other.log_likelihood
        self.rows += other.rows
        self.log_weights = None  # a sum over batches is not tied to one set of weights
        return self


@torch.no_grad()
def batch_flows(model, x, missing=None) -> FlowStats:
    return encoded_flows(model, *model.encode(x, missing))


@torch.no_grad()
def encoded_flows(model, x_int, x_real, input_logp: torch.Tensor | None = None, deferred: bool = False) -> FlowStats:
    """Flows of an encoded batch. Nothing here waits for the device (no .item(), no boolean
    indexing, no data-dependent shapes), so a training step can be captured as a CUDA graph.
    `input_logp` [R_in, B]: input log-values to use instead of the model's (softened evidence).
    `deferred`: the input statistics go straight to em_update, before the model's next pass, so
    a backend may form them in its M-step (Executor.input_stats)."""
    ex = model.executor
    logw = model.sum_log_weights(padded=True)
    if input_logp is None:  # the executor's kept buffers: nothing returned here points into them
        mars = model.node_values(x_int, x_real, logw, reuse=True)
    else:
        mars = ex.forward_mars(input_logp, logw, complete=False)
    root = mars[ex.out_row]
    ok = torch.isfinite(root)  # zero-probability rows carry no flow
    grad = ok.to(mars.dtype)
    flows, sum_flows = ex.backward_flows(mars, logw, grad, reuse=True)
    stats = [
        _input_stats(ex, part, h, flows[part.start : part.start + part.size], x_int, x_real, deferred)
        for part, h in zip(model.program.input_partitions, model.inputs)
    ]
    ll = torch.where(ok, root, torch.zeros_like(root)).double().sum()
    return FlowStats(sum_flows, stats, ll, int(x_int.shape[0]), logw)


def _input_stats(ex, part, h, f, x_int, x_real, deferred: bool = False):
    """A partition's statistics from the backend's kernel where it has one, else its family's."""
    stats = ex.input_stats(part, h.vars, f, x_int, x_real, deferred)
    if stats is None:
        stats = family(part.dist).stats(part, dict(h.named_parameters()), h.vars, f, x_int, x_real)
    return stats


def dataset_flows(model, data, batch_size: int = 512) -> FlowStats:
    total = None
    for i in range(0, len(data), batch_size):
        s = batch_flows(model, data[i : i + batch_size])
        total = s if total is None else total.add_(s)
    return total


def edge_flows(model, data, batch_size: int = 512, group=None) -> dict[int, np.ndarray]:
    """Aggregate edge flows F_{n,c}(data) per (non-tied) IR sum node: {node id: [size, K] array},
    zero off the mask. Tied nodes' flows are added into their source's entry. `group`
    (learn.distributed): this rank's shard of the rows, the flows summed over the ranks."""
    if group is not None:
        data = data[group.shard(len(data))]
    if len(data):
        flows = dataset_flows(model, data, batch_size).sum_flows.double()
    else:  # a rank without rows still takes part in the sum
        flows = torch.zeros(model.program.num_sum_params, dtype=torch.float64, device=model.device)
    if group is not None:
        group.sum_([flows])
    flat = flows.cpu().numpy()
    out = {}
    for lay in model.program.sum_layout:
        mask = np.ones((lay.size, lay.width), bool) if lay.mask is None else np.asarray(lay.mask, bool)
        f = np.zeros(mask.shape)
        f[mask] = flat[lay.offset : lay.offset + int(mask.sum())]
        out[lay.node] = f
    return out
