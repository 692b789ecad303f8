"""Masked sum partitions as sparse blocks, the layout the CPU target's sparse kernels read.

The packer lays a pruned sum out as groups of G nodes over the union of their K children, with
the pruned edges at the padding weight 0 (codegen.torch_backend: `param_ids` equal to the
padding slot). A matrix unit does that padded work for free; a CPU pays for every multiply-add,
and a prune-grow round at 25% density paid four times per live edge. The sparse kernels instead
walk each node's live edges only. Nodes of one group with the same live columns (after `grow`,
a node and its copies) form one block of up to four rows, so that every child tile loaded
feeds up to four multiply-adds, as in the dense kernel's register blocking.

Order of everything: blocks by group; within a block its columns ascending, and for each
column its rows, so that edge `w_start[b] + p * count[b] + r` is row r's weight on column p.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

BLOCK_ROWS = 4  # rows per block: the dense kernel's register blocking


@dataclass(frozen=True)
class SparseBlocks:
    """A masked sum partition as blocks of rows that share their live columns.

    group_start [g + 1]: each group's blocks; rows [blocks, 4]: the block's nodes (their index in
    the group; slots past `count` are 0); count [blocks]; col_start [blocks + 1] and cols: each
    block's live child slots; w_start [blocks]: its first edge; param_ids [edges]: each edge's
    weight id (what the kernels' weights are gathered by and their flows added at);
    group_edges: the most edges of one group (the backward's per-thread scratch); density: live
    edges over the partition's padded g * G * K."""

    group_start: torch.Tensor
    rows: torch.Tensor
    count: torch.Tensor
    col_start: torch.Tensor
    cols: torch.Tensor
    w_start: torch.Tensor
    param_ids: torch.Tensor
    group_edges: int
    density: float


def sparse_blocks(param_ids: np.ndarray, pad: int) -> SparseBlocks:
    """The blocks of a [g, G, K] array of weight ids whose pruned edges read slot `pad`."""
    g, G, K = param_ids.shape
    pid = param_ids.reshape(g * G, K)
    live = pid != pad
    group = np.repeat(np.arange(g), G)
    # one class per (group, live pattern); np.unique sorts them by group first
    key = np.column_stack([group, np.packbits(live, axis=1).astype(np.int64)])
    _, cls = np.unique(key, axis=0, return_inverse=True)
    cls = cls.reshape(-1)
    order = np.argsort(cls, kind="stable")  # nodes by class, ascending within one
    sizes = np.bincount(cls)
    first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rank = np.arange(g * G) - first[cls[order]]
    class_blocks = -(-sizes // BLOCK_ROWS)
    block = (np.concatenate([[0], np.cumsum(class_blocks)[:-1]])[cls[order]] + rank // BLOCK_ROWS).astype(np.int64)
    nb = int(class_blocks.sum())
    rows = np.zeros((nb, BLOCK_ROWS), np.int64)
    rows[block, rank % BLOCK_ROWS] = order % G
    count = np.bincount(block, minlength=nb).astype(np.int64)
    block_group = np.zeros(nb, np.int64)
    block_group[block] = group[order]
    rep = block_group * G + rows[:, 0]  # one node of each block: its live pattern
    pair_block, pair_col = np.nonzero(live[rep])  # (block, column), by block then column
    ncols = np.bincount(pair_block, minlength=nb)
    col_start = np.concatenate([[0], np.cumsum(ncols)]).astype(np.int64)
    # edges: per (block, column) pair, its block's rows in order
    per_pair = count[pair_block]
    pair_of_edge = np.repeat(np.arange(pair_block.size), per_pair)
    r = np.arange(pair_of_edge.size) - np.repeat(np.cumsum(per_pair) - per_pair, per_pair)
    b_of_edge = pair_block[pair_of_edge]
    edge_ids = pid[block_group[b_of_edge] * G + rows[b_of_edge, r], pair_col[pair_of_edge]]
    block_edges = count * ncols
    w_start = np.concatenate([[0], np.cumsum(block_edges)[:-1]]).astype(np.int64)
    group_start = np.searchsorted(block_group, np.arange(g + 1)).astype(np.int64)
    group_edges = int(np.add.reduceat(block_edges, group_start[:-1]).max()) if nb else 0
    t = torch.as_tensor
    return SparseBlocks(
        group_start=t(group_start),
        rows=t(rows.reshape(-1).copy()),
        count=t(count),
        col_start=t(col_start),
        cols=t(pair_col.astype(np.int64)),
        w_start=t(w_start),
        param_ids=t(edge_ids.astype(np.int64)),
        group_edges=group_edges,
        density=float(live.mean()) if live.size else 1.0,
    )
