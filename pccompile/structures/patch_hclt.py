"""Patch HCLT: one latent per image patch, as latent variable distillation builds its PCs (Liu,
Zhang, Van den Broeck 2023): the image is cut into `patch` x `patch` tiles, each tile's latent
Z_P has `latents` states, and below it the product of its pixels' inputs (row i: the pixels'
distributions given Z_P = i). The latents form a Chow-Liu tree over the patches, learned from
each patch's mean value (quantised to `bins` levels), with an h x h sum on each tree edge.

LVD then clusters one embedding per patch into Z_P's states; a per-pixel HCLT instead has a
latent per pixel, which every pixel of a patch embeds alike but for its own value.
"""

from __future__ import annotations

import numpy as np

from pccompile import builder
from pccompile.ir import ArgumentError, Region

from .chow_liu import chow_liu_tree
from .hclt import tree_latent


def patch_groups(shape: tuple[int, int], patch: int) -> list[list[int]]:
    """The pixel indices (row-major) of each patch, patches row by row; edge patches may be smaller."""
    H, W = shape
    return [
        [r * W + c for r in range(r0, min(r0 + patch, H)) for c in range(c0, min(c0 + patch, W))]
        for r0 in range(0, H, patch)
        for c0 in range(0, W, patch)
    ]


def patch_hclt(
    data: np.ndarray,
    shape: tuple[int, int],
    patch: int,
    latents: int,
    num_cats,
    *,
    bins: int = 16,
    pseudocount: float = 0.1,
    max_rows: int | None = 20000,
    leaf_sums: bool = True,
    variables: list[int] | None = None,
) -> builder.Vec:
    """The patch HCLT of images `data` [N, H*W] of `shape`; see the module docstring."""
    data = np.asarray(data)
    H, W = shape
    if data.ndim != 2 or data.shape[1] != H * W:
        raise ArgumentError(f"patch_hclt data must be [rows, {H * W}] for an image of {H} x {W}, got {data.shape}")
    if not 1 <= patch <= max(H, W):
        raise ArgumentError(f"patch_hclt needs a patch side in 1..{max(H, W)}, got {patch}")
    cats = np.broadcast_to(np.asarray(num_cats), (H * W,)).astype(int)
    groups = patch_groups((H, W), patch)
    var_ids = list(range(H * W)) if variables is None else list(variables)
    # each patch's mean value, scaled to `bins` levels: what the tree's mutual information reads
    scale = bins / max(int(cats.max()), 1)
    means = np.stack([np.clip(data[:, g], 0, None).mean(1) for g in groups], 1)
    coarse = np.minimum((means * scale).astype(np.int64), bins - 1)
    _, parent = chow_liu_tree(coarse, bins, pseudocount, max_rows)
    cols = -(-W // patch)

    def own(p: int) -> tuple[builder.Vec, Region]:
        inputs = [builder.input_vector(var_ids[v], latents, int(cats[v])) for v in groups[p]]
        vec = builder.multiply(*inputs) if len(inputs) > 1 else inputs[0]
        name = f"Z[patch {p // cols},{p % cols}]"
        return vec, Region(name, tuple(var_ids[v] for v in groups[p]))

    return builder.summate(tree_latent(parent, latents, own, leaf_sums), size=1)
