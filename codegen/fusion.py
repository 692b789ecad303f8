"""Product fusion, shared by both backends: which product layers a sum layer can absorb.

A product layer whose rows are read only by the sum partitions right after it (and not the root)
need not be stored: each such sum computes its children from the products' factors. The Triton
kernels read the factor rows `[g, K, F]` directly; the torch backend also recognises children
that are an outer product of two factor vectors (RAT-SPN and Tucker layers) and forms them from
the two vectors, never gathering K_a x K_b rows (`outer_split`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pccompile.ir import ONE_ROW, ZERO_ROW, Program


@dataclass
class FusionPlan:
    """Which product layers fusion removes, and the factor rows each fused sum partition reads.

    `skip` holds product layers read only by the sum partitions right after them (and not the
    root): they are not launched in a normal pass. `children[(layer, partition)]` is [g, K, F]:
    for every child slot of a fusable sum partition, the rows of that product's factors (ONE_ROW
    padding; a padded child slot is ZERO_ROW then ONE_ROWs, so it stays -inf)."""

    skip: set[int] = field(default_factory=set)
    children: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)


def plan_fusion(program: Program, fuse: bool = True) -> FusionPlan:
    """The fusion plan of a Program (empty when `fuse` is off)."""
    layers = program.layers
    plan = FusionPlan()
    if not fuse:
        return plan
    fusable: set[tuple[int, int]] = set()  # (sum layer, partition) reading only the products before it
    for li, layer in enumerate(layers[1:], start=1):
        if layer.kind != "product" or li + 1 >= len(layers) or layers[li + 1].kind != "sum":
            continue
        F = max(p.child_rows.shape[1] for p in layer.partitions)
        factors = np.full((program.num_rows, F), ONE_ROW, dtype=np.int64)  # row -> its factor rows
        is_prod = np.zeros(program.num_rows, bool)
        for p in layer.partitions:
            factors[p.rows, : p.child_rows.shape[1]] = p.child_rows
            is_prod[p.rows] = True
        for pi, sp in enumerate(layers[li + 1].partitions):
            ch = sp.child_rows
            if np.all(is_prod[ch] | (ch == ZERO_ROW)):
                fusable.add((li + 1, pi))
                comp = factors[ch]  # [g, K, F]
                comp[ch == ZERO_ROW] = ONE_ROW
                comp[ch == ZERO_ROW, 0] = ZERO_ROW  # a padded child is -inf
                plan.children[(li + 1, pi)] = comp
    # a product row may be skipped when every reader is a fusable partition of the next layer
    layer_of = np.zeros(program.num_rows, dtype=np.int64)
    for li, layer in enumerate(layers[1:], start=1):
        for p in layer.partitions:
            layer_of[p.rows.reshape(-1)] = li
    other_reader = np.zeros(program.num_rows, bool)
    for li, layer in enumerate(layers[1:], start=1):
        for pi, part in enumerate(layer.partitions):
            ch = np.unique(part.child_rows)
            absorbed = (li, pi) in fusable and layer.kind == "sum"
            other_reader[ch[~(absorbed & (layer_of[ch] == li - 1))]] = True
    other_reader[program.root_row] = True
    for li, layer in enumerate(layers[1:], start=1):
        if layer.kind == "product" and any(key[0] == li + 1 for key in fusable):
            rows = np.concatenate([p.rows for p in layer.partitions])
            if not other_reader[rows].any():
                plan.skip.add(li)
    return plan


def kept_rows(program: Program, skip: set[int]) -> np.ndarray:
    """[num_rows] each Program row's row in a buffer without the skipped product layers' rows
    (-1 for those; the others keep their order, so input rows stay at FIRST_ROW)."""
    perm = np.zeros(program.num_rows, dtype=np.int64)
    for li in skip:
        for p in program.layers[li].partitions:
            perm[p.rows] = -1
    kept = perm >= 0
    perm[kept] = np.arange(int(kept.sum()))
    return perm


def used_columns(comp: np.ndarray) -> np.ndarray:
    """comp [g, K, F] without the factor columns that are padding (ONE_ROW, log 1) throughout."""
    keep = ~np.all(comp == ONE_ROW, axis=(0, 1))
    keep[0] = True  # a padded child keeps its ZERO_ROW in column 0
    return comp[:, :, keep]


def outer_split(comp: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """When every group's K children are the outer product of two factor vectors, child
    i * Kb + j = (sum of factors a[i]) + (sum of factors b[j]): (a [g, Ka, Fa], b [g, Kb, Fb]);
    otherwise None. A factor column that does not vary with j belongs to a, one that does not
    vary with i to b; any split that places every column is exact."""
    g, K, F = comp.shape
    # an a-column repeats each row Kb times in a row: the run lengths of group 0 are the candidates
    runs = {int(np.argmax(comp[0, :, f] != comp[0, 0, f])) for f in range(F)}
    for Kb in sorted(r for r in runs if 1 < r < K and K % r == 0):
        grid = comp.reshape(g, K // Kb, Kb, F)
        along_j = np.all(grid == grid[:, :, :1], axis=(0, 1, 2))  # column constant along j
        along_i = np.all(grid == grid[:, :1], axis=(0, 1, 2))  # column constant along i
        a_cols = [f for f in range(F) if along_j[f] and not (along_i[f] and np.all(comp[..., f] == ONE_ROW))]
        b_cols = [f for f in range(F) if along_i[f] and not along_j[f]]
        if a_cols and b_cols and len(a_cols) + len(b_cols) + _padding(comp, along_i & along_j) == F:
            return grid[:, :, 0][..., a_cols], grid[:, 0][..., b_cols]
    return None


def _padding(comp: np.ndarray, constant: np.ndarray) -> int:
    """Columns that are ONE_ROW everywhere (constant in both directions): they add nothing."""
    return sum(1 for f in range(comp.shape[2]) if constant[f] and np.all(comp[..., f] == ONE_ROW))
