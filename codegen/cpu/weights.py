"""The sum weights of one pass as the CPU kernels read them.

Every kernel-run sum partition reads its [g, G, K] log-weights and weights (a sparse one, its
live edges in block order), and its backward adds each weight's flow at the weight's id. Per
partition and pass, gathering them took an index, an exp and a copy of torch's (a [g, G, K]
weight-id tensor rebuilt each time where the weights are not one block), and the weight flows
a zeroed buffer and an index_add: about 60 microseconds of a 100 microsecond partition at an
MNIST HCLT's latents 32. Here one gather and one exp per pass serve all partitions, and the
backward kernels add the flows at the ids themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..layers import ProgramTensors
from .sparse import SparseBlocks


@dataclass(frozen=True)
class WeightLayout:
    """The weight ids of a ProgramTensors' sum partitions, concatenated in layer order.

    ids [edges]: each partition's [g, G, K] ids row-major (a sparse partition's edge ids);
    spans: key -> (start, end) in ids; unique: key -> whether no live id repeats in the
    partition (tied weights repeat; the kernels then add their flows on one thread);
    pad: the padding slot (weight 0), whose flow is dropped."""

    ids: torch.Tensor
    spans: dict[str, tuple[int, int]]
    unique: dict[str, bool]
    pad: int


def weight_layout(pt: ProgramTensors, sparse: dict[str, SparseBlocks]) -> WeightLayout:
    """The layout of every sum partition of `pt`, `sparse` ones by their blocks' edges."""
    pieces, spans, unique, at = [], {}, {}, 0
    for kind, keys in pt.layer_specs:
        for key in keys if kind == "sum" else ():
            ids = sparse[key].param_ids if key in sparse else pt.param_ids(key).reshape(-1)
            live = ids[ids != pt.num_params]
            pieces.append(ids)
            spans[key] = (at, at + ids.numel())
            unique[key] = bool(torch.unique(live).numel() == live.numel())
            at += ids.numel()
    ids = torch.cat(pieces).contiguous() if pieces else torch.zeros(0, dtype=torch.int64)
    return WeightLayout(ids, spans, unique, pt.num_params)


@dataclass
class PassWeights:
    """One pass's weights, gathered from `logw_ext` (the padded flat log-weights): lw and w
    [edges] in the layout's order. `matches` says whether they are still those of a given
    logw_ext (the same tensor, unchanged since: its version counter), so that a backward pass
    reuses the forward's. It holds logw_ext, so that no other tensor can take its identity."""

    layout: WeightLayout
    logw_ext: torch.Tensor
    lw: torch.Tensor = field(init=False)
    w: torch.Tensor = field(init=False)
    version: int = field(init=False)

    def __post_init__(self):
        self.lw = self.logw_ext[self.layout.ids]
        self.w = self.lw.exp()
        self.version = -1 if self.logw_ext.is_inference() else self.logw_ext._version

    def matches(self, logw_ext: torch.Tensor) -> bool:
        """Inference tensors keep no version, so they never match: gathered again each time."""
        return self.version >= 0 and logw_ext is self.logw_ext and logw_ext._version == self.version

    def of(self, key: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(log-weights, weights) of one partition, flat views."""
        a, b = self.layout.spans[key]
        return self.lw[a:b], self.w[a:b]

    def flow_args(self, key: str) -> tuple[int, int, int]:
        """The backward kernels' (ids, pad, unique) arguments of one partition."""
        a, _ = self.layout.spans[key]
        ids = self.layout.ids
        return ids.data_ptr() + a * ids.element_size(), self.layout.pad, int(self.layout.unique[key])
