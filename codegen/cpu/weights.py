"""The sum weights as the CPU kernels read them, and where their flows go.

A dense sum partition whose every group has all K children (no padding) keeps each group's
[G, K] weights as one row-major block of the flat log-weight vector, consecutive or scattered
(a Tucker layer's groups lie between other partitions' blocks). The dense kernels read such
blocks in place, at one offset per group, exponentiate each group's weights themselves, and add
each weight's flow at its place in the vector: no per-call copy, exp or id tensor of the
weights' size (at RAT-SPN K = 64, gathering the scattered blocks by ids took 23 ms of a 226 ms
EM step). A padded partition gathers its log-weights by `param_ids` and reads the copy at
offsets into it; a sparse one (codegen.cpu.sparse) gathers its live edges by their ids. Both
add their flows at those ids.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..layers import ProgramTensors
from .sparse import SparseBlocks


@dataclass(frozen=True)
class WeightLayout:
    """How each sum partition of a ProgramTensors reads its weights in the flat vector.

    in_place: key -> each group's offset [g] in the flat vector, for a dense partition read in
    place; padded: key -> each group's offset in the partition's gathered copy ([g, G, K] by
    `param_ids`); sparse: key -> its edges' ids (SparseBlocks.param_ids). unique: key -> whether
    no live id repeats in the partition (tied weights repeat; the kernels then add their flows
    on one thread). pad: the padding slot (weight 0), whose flow is dropped."""

    in_place: dict[str, torch.Tensor]
    padded: dict[str, torch.Tensor]
    sparse: dict[str, torch.Tensor]
    unique: dict[str, bool]
    pad: int


def weight_layout(pt: ProgramTensors, sparse: dict[str, SparseBlocks]) -> WeightLayout:
    """The layout of every sum partition of `pt`, `sparse` ones by their blocks' edges."""
    in_place, padded, edges, unique = {}, {}, {}, {}
    for kind, keys in pt.layer_specs:
        for key in keys if kind == "sum" else ():
            if key in sparse:
                edges[key] = sparse[key].param_ids
                unique[key] = _no_repeats(edges[key], pt.num_params)
                continue
            start = pt.group_starts(key)
            if start is not None:
                in_place[key] = start.to(torch.int64).contiguous()
                unique[key] = int(torch.unique(start).numel()) == start.numel()  # a tied block appears twice
            else:
                ids = pt.param_ids(key)
                g, G, K = ids.shape
                padded[key] = torch.arange(g, dtype=torch.int64) * (G * K)
                unique[key] = _no_repeats(ids, pt.num_params)
    return WeightLayout(in_place, padded, edges, unique, pt.num_params)


def _no_repeats(ids: torch.Tensor, pad: int) -> bool:
    """Whether no id but the padding slot occurs twice."""
    live = ids[ids != pad]
    return bool(torch.unique(live).numel() == live.numel())


@dataclass(frozen=True)
class PartitionWeights:
    """One partition's weights for the kernels: log-weights lw (the flat vector itself, or the
    partition's gathered copy), each group's offset in lw (dense partitions; None for sparse
    ones, whose kernels read lw edge by edge), and where its weight flows go in the gradient:
    at ids, or (ids None) at the weights' own places in the flat vector."""

    lw: torch.Tensor
    offsets: torch.Tensor | None
    ids: torch.Tensor | None
    unique: bool

    def group_args(self) -> tuple[int, int]:
        """The dense kernels' (logw, woff) arguments."""
        assert self.offsets is not None
        return self.lw.data_ptr(), self.offsets.data_ptr()

    def flow_args(self, pad: int, grad: torch.Tensor) -> tuple[int, int, int, int]:
        """The dense backward kernel's (ids, pad, unique, grad) arguments."""
        ids = 0 if self.ids is None else self.ids.data_ptr()
        return ids, pad, int(self.unique), grad.data_ptr()


def partition_weights(layout: WeightLayout, pt: ProgramTensors, key: str, logw_ext: torch.Tensor) -> PartitionWeights:
    """One partition's weights from the padded flat log-weights, formed per call: nothing of the
    weights' size outlives it. A dense partition read in place copies nothing; the others
    gather theirs by ids (one index)."""
    unique = layout.unique[key]
    if key in layout.in_place:
        return PartitionWeights(logw_ext.contiguous(), layout.in_place[key], None, unique)
    ids = layout.sparse[key] if key in layout.sparse else pt.param_ids(key).reshape(-1)
    return PartitionWeights(logw_ext.index_select(0, ids), layout.padded.get(key), ids, unique)
