"""The sum weights of one pass as the CPU kernels read them.

Every kernel-run sum partition reads its [g, G, K] log-weights and weights (a sparse one, its
live edges in block order), and its backward adds each weight's flow at the weight's id. Per
partition and pass, gathering them took an index, an exp and a copy of torch's (a [g, G, K]
weight-id tensor rebuilt each time where the weights are not one block), and the weight flows
a zeroed buffer and an index_add: about 60 microseconds of a 100 microsecond partition at an
MNIST HCLT's latents 32. Here one exp of the flat vector per pass serves all partitions: a
partition whose weights are one block of it reads views (and its kernels add the flows at the
block's offset), the others one gather by their ids (sparse and scattered partitions).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..layers import ProgramTensors
from .sparse import SparseBlocks


@dataclass(frozen=True)
class WeightLayout:
    """Where each sum partition of a ProgramTensors reads its weights in the flat vector.

    blocks: key -> (start, size) for a partition whose [g, G, K] weights are one row-major block
    of it; ids [n]: the weight ids of the other partitions, concatenated (a sparse partition's
    edge ids), and spans: key -> (start, end) in ids; unique: key -> whether no live id repeats
    in the partition (tied weights repeat; the kernels then add their flows on one thread);
    pad: the padding slot (weight 0), whose flow is dropped."""

    blocks: dict[str, tuple[int, int]]
    ids: torch.Tensor
    spans: dict[str, tuple[int, int]]
    unique: dict[str, bool]
    pad: int


def weight_layout(pt: ProgramTensors, sparse: dict[str, SparseBlocks]) -> WeightLayout:
    """The layout of every sum partition of `pt`, `sparse` ones by their blocks' edges."""
    blocks, pieces, spans, unique, at = {}, [], {}, {}, 0
    for kind, keys in pt.layer_specs:
        for key in keys if kind == "sum" else ():
            starts = pt.weight_blocks.get(key)
            if key not in sparse and starts is not None and len(starts) == 1:
                g, G, K = pt.sum_shape(key)
                blocks[key] = (starts[0], g * G * K)
                unique[key] = True
                continue
            ids = sparse[key].param_ids if key in sparse else pt.param_ids(key).reshape(-1)
            live = ids[ids != pt.num_params]
            pieces.append(ids)
            spans[key] = (at, at + ids.numel())
            unique[key] = bool(torch.unique(live).numel() == live.numel())
            at += ids.numel()
    ids = torch.cat(pieces).contiguous() if pieces else torch.zeros(0, dtype=torch.int64)
    return WeightLayout(blocks, ids, spans, unique, pt.num_params)


@dataclass
class PassWeights:
    """One pass's weights from `logw_ext` (the padded flat log-weights): w_ext, its exp, and the
    gathered log-weights and weights of the partitions that are not one block. `matches` says
    whether they are still those of a given logw_ext (the same tensor, unchanged since: its
    version counter), so that a backward pass reuses the forward's. It holds logw_ext, so that
    no other tensor can take its identity."""

    layout: WeightLayout
    logw_ext: torch.Tensor
    w_ext: torch.Tensor = field(init=False)
    lw: torch.Tensor = field(init=False)
    w: torch.Tensor = field(init=False)
    version: int = field(init=False)

    def __post_init__(self):
        self.w_ext = self.logw_ext.exp()
        self.lw = self.logw_ext.index_select(0, self.layout.ids)
        self.w = self.w_ext.index_select(0, self.layout.ids)
        self.version = -1 if self.logw_ext.is_inference() else self.logw_ext._version

    def matches(self, logw_ext: torch.Tensor) -> bool:
        """Inference tensors keep no version, so they never match: gathered again each time."""
        return self.version >= 0 and logw_ext is self.logw_ext and logw_ext._version == self.version

    def of(self, key: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(log-weights, weights) of one partition, flat views."""
        if key in self.layout.blocks:
            a, n = self.layout.blocks[key]
            return self.logw_ext[a : a + n], self.w_ext[a : a + n]
        a, b = self.layout.spans[key]
        return self.lw[a:b], self.w[a:b]

    def flow_args(self, key: str) -> tuple[int, int, int, int]:
        """The backward kernels' (ids, base, pad, unique) arguments of one partition: a block's
        weight p has id base + p (ids NULL), the others ids[p]."""
        unique = int(self.layout.unique[key])
        if key in self.layout.blocks:
            return 0, self.layout.blocks[key][0], self.layout.pad, unique
        ids = self.layout.ids
        return ids.data_ptr() + self.layout.spans[key][0] * ids.element_size(), 0, self.layout.pad, unique
