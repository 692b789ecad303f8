"""The sum weights as the CPU kernels read them, and where their flows go.

Every kernel-run sum partition reads its [g, G, K] log-weights and weights (a sparse one, its
live edges in block order), and its backward adds each weight's flow at the weight's id. Per
partition and call, the torch backend's way took a [g, G, K] weight-id tensor rebuilt each time
where the weights are not one block, a transposed copy of the weights, a zeroed flow buffer and
an index_add: about 60 microseconds of a 100 microsecond partition at an MNIST HCLT's latents
32. Here a partition whose weights are one block of the flat vector (the usual case) reads a
view, and its kernels add the flows at the block's offset; a sparse partition adds at its
edges' ids, kept with its blocks; the others keep what they did (a dense partition of scattered
blocks copies them and takes its flows back through a buffer, a padded one gathers by ids).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..layers import ProgramTensors
from .sparse import SparseBlocks


@dataclass(frozen=True)
class WeightLayout:
    """How each sum partition of a ProgramTensors reads its weights in the flat vector.

    blocks: key -> (start, size) for a partition whose [g, G, K] weights are one row-major block
    of it; sparse: key -> its edges' ids (SparseBlocks.param_ids); scattered: the dense
    partitions of several blocks; the others gather by `param_ids` per call. unique: key ->
    whether no live id repeats in a partition added at ids (tied weights repeat; the kernels
    then add their flows on one thread). pad: the padding slot (weight 0), whose flow is dropped."""

    blocks: dict[str, tuple[int, int]]
    sparse: dict[str, torch.Tensor]
    scattered: frozenset[str]
    unique: dict[str, bool]
    pad: int


def weight_layout(pt: ProgramTensors, sparse: dict[str, SparseBlocks]) -> WeightLayout:
    """The layout of every sum partition of `pt`, `sparse` ones by their blocks' edges."""
    blocks, edges, scattered, unique = {}, {}, set(), {}
    for kind, keys in pt.layer_specs:
        for key in keys if kind == "sum" else ():
            starts = pt.weight_blocks.get(key)
            if key in sparse:
                edges[key] = sparse[key].param_ids
                ids = edges[key]
            elif starts is not None:
                g, G, K = pt.sum_shape(key)
                if len(starts) == 1:
                    blocks[key] = (starts[0], g * G * K)
                else:
                    scattered.add(key)
                continue
            else:
                ids = pt.param_ids(key).reshape(-1)
            live = ids[ids != pt.num_params]
            unique[key] = bool(torch.unique(live).numel() == live.numel())
    return WeightLayout(blocks, edges, frozenset(scattered), unique, pt.num_params)


@dataclass(frozen=True)
class PartitionWeights:
    """One partition's weights for the kernels: flat log-weights and weights, and where its
    weight flows go: at ids (a tensor) or at base + p (ids None), into the gradient, or into
    `buffer` (zeroed) when the caller adds them itself (ProgramTensors.add_weight_flows)."""

    lw: torch.Tensor
    w: torch.Tensor
    ids: torch.Tensor | None
    base: int
    unique: bool
    buffer: torch.Tensor | None = None

    def flow_args(self, pad: int, grad: torch.Tensor) -> tuple[int, int, int, int, int]:
        """The backward kernels' (ids, base, pad, unique, grad) arguments (a buffer has no
        padding slot: pad -1)."""
        if self.buffer is not None:
            return 0, 0, -1, int(self.unique), self.buffer.data_ptr()
        ids = 0 if self.ids is None else self.ids.data_ptr()
        return ids, self.base, pad, int(self.unique), grad.data_ptr()


def partition_weights(
    layout: WeightLayout, pt: ProgramTensors, key: str, logw_ext: torch.Tensor, backward: bool = False
) -> PartitionWeights:
    """One partition's weights from the padded flat log-weights (`backward`: with a flow buffer
    where it needs one). Formed per call: nothing of the weights' size outlives it."""
    if key in layout.blocks:
        a, n = layout.blocks[key]
        lw = logw_ext[a : a + n]
        return PartitionWeights(lw, lw.exp(), None, a, True)
    if key in layout.scattered:
        lw = pt.log_weights(key, logw_ext).reshape(-1)
        return PartitionWeights(lw, lw.exp(), None, 0, True, torch.zeros_like(lw) if backward else None)
    ids = layout.sparse[key] if key in layout.sparse else pt.param_ids(key).reshape(-1)
    lw = logw_ext.index_select(0, ids)
    return PartitionWeights(lw, lw.exp(), ids, 0, layout.unique[key])
