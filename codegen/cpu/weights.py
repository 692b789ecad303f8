"""The sum weights as the CPU kernels read them, and where their flows go.

Every kernel-run sum partition reads its [g, G, K] log-weights and weights (a sparse one, its
live edges in block order), and its backward adds each weight's flow at the weight's id. Per
partition and call, the torch backend's way took a [g, G, K] weight-id tensor rebuilt each time
where the weights are not one block, a transposed copy of the weights, a zeroed flow buffer and
an index_add: about 60 microseconds of a 100 microsecond partition at an MNIST HCLT's latents
32. Here a partition whose weights are one block of the flat vector (the usual case) reads a
view, and its kernels add the flows at the block's offset; the others gather theirs by ids
and add their flows there: a sparse partition's edge ids, kept with its blocks; a dense
partition of scattered blocks, ids formed from the blocks' starts; a padded one, its
`param_ids`.
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
    of it; scattered: key -> (the start of each group's [G, K] block, G K) for a dense partition
    of several blocks; sparse: key -> its edges' ids (SparseBlocks.param_ids); the others (padded)
    gather by `param_ids`. unique: key -> whether no live id repeats in the partition (tied
    weights repeat; the kernels then add their flows on one thread). pad: the padding slot
    (weight 0), whose flow is dropped."""

    blocks: dict[str, tuple[int, int]]
    scattered: dict[str, tuple[torch.Tensor, int]]
    sparse: dict[str, torch.Tensor]
    unique: dict[str, bool]
    pad: int


def weight_layout(pt: ProgramTensors, sparse: dict[str, SparseBlocks]) -> WeightLayout:
    """The layout of every sum partition of `pt`, `sparse` ones by their blocks' edges."""
    blocks, scattered, edges, unique = {}, {}, {}, {}
    for kind, keys in pt.layer_specs:
        for key in keys if kind == "sum" else ():
            starts = pt.weight_blocks.get(key)
            if key in sparse:
                edges[key] = sparse[key].param_ids
                unique[key] = _no_repeats(edges[key], pt.num_params)
            elif starts is not None:
                g, G, K = pt.sum_shape(key)
                if len(starts) == 1:
                    blocks[key] = (starts[0], g * G * K)
                else:
                    scattered[key] = (torch.as_tensor(starts, dtype=torch.int64), G * K)
                unique[key] = len(set(starts)) == len(starts)  # a tied block appears twice
            else:
                unique[key] = _no_repeats(pt.param_ids(key), pt.num_params)
    return WeightLayout(blocks, scattered, edges, unique, pt.num_params)


def _no_repeats(ids: torch.Tensor, pad: int) -> bool:
    """Whether no id but the padding slot occurs twice."""
    live = ids[ids != pad]
    return bool(torch.unique(live).numel() == live.numel())


@dataclass(frozen=True)
class PartitionWeights:
    """One partition's weights for the kernels: flat log-weights and weights, and where its
    weight flows go in the gradient: at ids (a tensor), or at base + p (ids None)."""

    lw: torch.Tensor
    w: torch.Tensor
    ids: torch.Tensor | None
    base: int
    unique: bool

    def flow_args(self, pad: int, grad: torch.Tensor) -> tuple[int, int, int, int, int]:
        """The backward kernels' (ids, base, pad, unique, grad) arguments."""
        ids = 0 if self.ids is None else self.ids.data_ptr()
        return ids, self.base, pad, int(self.unique), grad.data_ptr()


def partition_weights(layout: WeightLayout, pt: ProgramTensors, key: str, logw_ext: torch.Tensor) -> PartitionWeights:
    """One partition's weights from the padded flat log-weights, formed per call: nothing of the
    weights' size outlives it. A block is a view; scattered blocks are gathered by ids formed
    from their starts (one index, where copying the blocks one by one took 150 microseconds for
    a small HCLT partition)."""
    unique = layout.unique[key]
    if key in layout.blocks:
        a, n = layout.blocks[key]
        lw = logw_ext[a : a + n]
        return PartitionWeights(lw, lw.exp(), None, a, unique)
    if key in layout.scattered:
        starts, n = layout.scattered[key]
        ids = (starts[:, None] + torch.arange(n)).reshape(-1)
    elif key in layout.sparse:
        ids = layout.sparse[key]
    else:
        ids = pt.param_ids(key).reshape(-1)
    lw = logw_ext.index_select(0, ids)
    return PartitionWeights(lw, lw.exp(), ids, 0, unique)
