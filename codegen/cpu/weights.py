"""The sum weights of one pass as the CPU kernels read them.

Every kernel-run sum partition reads its [g, G, K] log-weights and weights (a sparse one, its
live edges in block order), and its backward adds each weight's flow at the weight's id. Per
partition and pass, gathering them took an index, an exp and a copy of torch's (a [g, G, K]
weight-id tensor rebuilt each time where the weights are not one block), and the weight flows
a zeroed buffer and an index_add: about 60 microseconds of a 100 microsecond partition at an
MNIST HCLT's latents 32. Here one exp of the flat vector per pass serves all partitions: a
partition whose weights are one block of it (the usual case) reads views, and its kernels add
the flows at the block's offset. A sparse partition gathers its edges once per pass and adds
its flows at their ids. The rest keep what they did, so that nothing of their size is held
between passes: a dense partition of scattered blocks copies them per call and takes its flows
back through a buffer, a padded one gathers by ids formed per call.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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


@dataclass
class PassWeights:
    """One pass's weights from `logw_ext` (the padded flat log-weights): w_ext, its exp, and the
    sparse partitions' gathered edges, formed at the pass's first partition and dropped at its
    end. `matches` says whether they are still those of a given logw_ext (the same tensor,
    unchanged since: its version counter). It holds logw_ext, so that no other tensor can take
    its identity while it is kept."""

    pt: ProgramTensors
    layout: WeightLayout
    logw_ext: torch.Tensor
    w_ext: torch.Tensor = field(init=False)
    version: int = field(init=False)
    _edges: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(init=False, default_factory=dict)

    def __post_init__(self):
        self.w_ext = self.logw_ext.exp()
        self.version = -1 if self.logw_ext.is_inference() else self.logw_ext._version

    def matches(self, logw_ext: torch.Tensor) -> bool:
        """Inference tensors keep no version, so they never match: gathered again each time."""
        return self.version >= 0 and logw_ext is self.logw_ext and logw_ext._version == self.version

    def of(self, key: str, backward: bool = False) -> PartitionWeights:
        """One partition's weights (`backward`: with a flow buffer where it needs one)."""
        lay = self.layout
        if key in lay.blocks:
            a, n = lay.blocks[key]
            return PartitionWeights(self.logw_ext[a : a + n], self.w_ext[a : a + n], None, a, True)
        if key in lay.sparse:
            ids = lay.sparse[key]
            if key not in self._edges:
                self._edges[key] = (self.logw_ext.index_select(0, ids), self.w_ext.index_select(0, ids))
            return PartitionWeights(*self._edges[key], ids, 0, lay.unique[key])
        if key in lay.scattered:
            lw = self.pt.log_weights(key, self.logw_ext).reshape(-1)
            buffer = torch.zeros_like(lw) if backward else None
            return PartitionWeights(lw, lw.exp(), None, 0, True, buffer)
        ids = self.pt.param_ids(key).reshape(-1)
        lw = self.logw_ext.index_select(0, ids)
        return PartitionWeights(lw, lw.exp(), ids, 0, lay.unique[key])
