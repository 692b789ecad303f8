"""Which of the backward pass's flow additions is the first into its row, so that the kernels
store it instead of adding it, and the flows buffer need not be zeroed first.

The backward visits the partitions in a fixed order (layers top-down, partitions within a layer
in reverse), and every kernel adds a partition's flows into its factor rows in a fixed order too:
groups (or product rows) ascending, then children, then factors; an outer product's first vector
before its second, per group. Every thread follows the same order over its own samples. So the
first addition into each row is known when the circuit is compiled: there the kernel stores
(and, for a tile no flow reaches, stores zeros). Rows that no partition writes are zeroed
apart. Zeroing an MNIST HCLT's flows buffer at latents 32 wrote 103 MB per step, all of it
written again before it is read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..layers import ProgramTensors


@dataclass(frozen=True)
class FirstTouch:
    """flags: partition key -> uint8 arrays shaped as the kernel's factor rows, 1 where that
    factor is its row's first addition (a sum: (comp [g, K, F], comp_b [g, Kb, Fb]); a product:
    (child [m, F],)); untouched: the rows no partition adds into, but the root's."""

    flags: dict[str, tuple[torch.Tensor, ...]]
    untouched: torch.Tensor


def first_touch(pt: ProgramTensors, arrays: dict, root_row: int) -> FirstTouch:
    """The flags of every partition of `pt` as the kernels read it (`arrays`: executor.launch_arrays)."""
    pieces, shapes = [], []  # per partition in backward order: its factor rows in kernel order, and -1 where unused
    for kind, keys in reversed(pt.layer_specs):
        for key in reversed(keys):
            if kind == "product":
                child = arrays[key][0].numpy()
                pieces.append(child.reshape(-1))
                shapes.append((key, [child.shape]))
                continue
            sl = arrays[key]
            a, b = _used(sl.comp.numpy(), sl.nf.numpy()), _used(sl.comp_b.numpy(), sl.nf_b.numpy())
            g = a.shape[0]
            pieces.append(np.concatenate([a.reshape(g, -1), b.reshape(g, -1)], axis=1).reshape(-1))
            shapes.append((key, [a.shape, b.shape]))
    order = np.concatenate(pieces) if pieces else np.zeros(0, np.int64)
    valid = np.flatnonzero(order >= 0)
    _, first_at = np.unique(order[valid], return_index=True)
    is_first = np.zeros(order.size, np.uint8)
    is_first[valid[first_at]] = 1
    flags, at = {}, 0
    for (key, parts), piece in zip(shapes, pieces):
        chunk = is_first[at : at + piece.size]
        at += piece.size
        if len(parts) == 1:
            flags[key] = (torch.as_tensor(chunk.reshape(parts[0]).copy()),)
            continue
        (g, *sa), (_, *sb) = parts
        width = int(np.prod(sa))
        two = chunk.reshape(g, -1)
        flags[key] = (
            torch.as_tensor(np.ascontiguousarray(two[:, :width]).reshape(g, *sa)),
            torch.as_tensor(np.ascontiguousarray(two[:, width:]).reshape(g, *sb)),
        )
    written = np.zeros(pt.num_rows, bool)
    written[order[valid]] = True
    written[root_row] = True
    return FirstTouch(flags, torch.as_tensor(np.flatnonzero(~written).astype(np.int64)))


def _used(comp: np.ndarray, nf: np.ndarray) -> np.ndarray:
    """comp [g, K, F] with the factors past each child's count nf [g, K] as -1 (the kernels skip them)."""
    out = comp.copy()
    out[np.arange(comp.shape[2])[None, None, :] >= nf[:, :, None]] = -1
    return out
