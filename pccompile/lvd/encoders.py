"""Embeddings of each latent's region, for every training row: what k-means clusters into the
latent's states. An encoder is anything with `fit(x)` (optional training on the data) and
`embed(x, latent) -> [N, D]` float tensor; the ones here:

- `ArrayEncoder`: precomputed embeddings, per latent name or as one [N, latents, D] array;
- `ModuleEncoder`: a user's torch module (a pretrained model) mapping a batch of rows to
  per-latent embeddings [B, latents, D], or to per-patch ones [B, patches, D] on an image grid;
- `PatchesEncoder`: the region's own values, over the image patch around it (the baseline);
- `MAEEncoder` (lvd.mae): a small masked autoencoder over image patches, trained on the data.

Image encoders map a latent to the patches its region's variables fall in (`PatchGrid`), and
append the region's own values: every pixel of one patch shares the patch's embedding, and its
own value is what tells their latents apart (weight `own`, relative to the embedding's spread).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pccompile.ir import ArgumentError

from .regions import Latent


@dataclass(frozen=True)
class PatchGrid:
    """An image of `shape` (H, W) cut into `patch` x `patch` tiles (the last ones may be smaller)."""

    shape: tuple[int, int]
    patch: int

    @property
    def rows(self) -> int:
        return -(-self.shape[0] // self.patch)

    @property
    def cols(self) -> int:
        return -(-self.shape[1] // self.patch)

    @property
    def count(self) -> int:
        return self.rows * self.cols

    def patch_of(self, var: int) -> int:
        r, c = divmod(int(var), self.shape[1])
        return (r // self.patch) * self.cols + c // self.patch

    def tiles(self, x: torch.Tensor) -> torch.Tensor:
        """[N, patches, patch * patch] pixel values per tile, zero-padded at ragged edges."""
        H, W = self.shape
        p = self.patch
        img = x.reshape(-1, H, W)
        img = torch.nn.functional.pad(img, (0, self.cols * p - W, 0, self.rows * p - H))
        t = img.reshape(-1, self.rows, p, self.cols, p).permute(0, 1, 3, 2, 4)
        return t.reshape(x.shape[0], self.count, p * p)


def default_patch(shape: tuple[int, int]) -> int:
    """Tiles of about a seventh of the shorter side, at least 2: 2 x 2 on the 8 x 8 digits,
    4 x 4 on MNIST's 28 x 28 (the LVD paper's 4 x 4 on 32 x 32 images)."""
    return max(2, min(shape) // 7)


def _standardise(e: torch.Tensor) -> torch.Tensor:
    """Centred, scaled to unit total variance, so parts of an embedding weigh as their weights say."""
    e = e - e.mean(0, keepdim=True)
    return e / e.pow(2).sum(1).mean().sqrt().clamp_min(1e-12)


def _with_own_values(e: torch.Tensor | None, x: torch.Tensor, latent: Latent, own: float) -> torch.Tensor:
    """The embedding e beside the region's own values (missing ones read as 0), each part
    standardised; `own` weighs the values."""
    values = _standardise(torch.nan_to_num(x[:, list(latent.variables)].float(), nan=0.0))
    if e is None:
        return values
    return torch.cat([_standardise(e), own * values], 1) if own > 0 else _standardise(e)


class Encoder:
    """fit(x) once on the training rows (x: [N, V] float, missing entries NaN), then
    embed(x, latent) per latent."""

    def fit(self, x: torch.Tensor) -> None:
        return None

    def prepare(self, x: torch.Tensor) -> None:
        """What fit(x) sets up before it learns anything, so that shared() has its shapes: a
        data-parallel rank other than 0 calls this, then receives rank 0's fitted values."""
        return None

    def shared(self) -> list[torch.Tensor]:
        """The tensors fit() learns, updated in place when ranks share rank 0's fit (none: an
        encoder that learns nothing, or a module every rank is given)."""
        return []

    def after_sharing(self, x: torch.Tensor) -> None:
        """What fit(x) computes from the learned values once they are in place."""
        return None

    def embed(self, x: torch.Tensor, latent: Latent) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover - interface


class ArrayEncoder(Encoder):
    """Precomputed embeddings: {latent name: [N, D]} or one [N, latents, D] array (region-map order)."""

    def __init__(self, arrays):
        self.arrays = arrays

    def embed(self, x, latent):
        a = self.arrays[latent.name] if isinstance(self.arrays, dict) else self.arrays[:, latent.id]
        e = torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a).float().to(x.device)
        if e.shape[0] != x.shape[0]:
            raise ArgumentError(f"embeddings of {latent.name} have {e.shape[0]} rows, the data {x.shape[0]}")
        return e.reshape(e.shape[0], -1)


class ModuleEncoder(Encoder):
    """A torch module mapping a batch [B, V] (float, NaN where missing) to [B, latents, D]
    embeddings, or with `grid` to [B, patches, D] ones (each latent reads the mean over the patches
    of its region, plus its own values weighted `own`). Run without gradients, in batches."""

    def __init__(self, module: torch.nn.Module, grid: PatchGrid | None = None, own: float = 1.0, batch: int = 1024):
        self.module, self.grid, self.own, self.batch = module, grid, own, batch
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None  # (rows, the module's outputs)

    @torch.no_grad()
    def outputs(self, x: torch.Tensor) -> torch.Tensor:
        """The module's outputs for all rows, computed once per rows tensor."""
        if self._cache is None or self._cache[0] is not x:
            parts = [self.module(x[i : i + self.batch]) for i in range(0, x.shape[0], self.batch)]
            self._cache = (x, torch.cat(parts).float())
        return self._cache[1]

    def embed(self, x, latent):
        out = self.outputs(x)
        if self.grid is None:
            return out[:, latent.id].reshape(x.shape[0], -1)
        patches = sorted({self.grid.patch_of(v) for v in latent.variables})
        return _with_own_values(out[:, patches].mean(1), x, latent, self.own)


class PatchesEncoder(Encoder):
    """The baseline: the values of the image patches the region falls in (with `grid`), else the
    region's own values. Missing values read as the variable's mean."""

    def __init__(self, grid: PatchGrid | None = None, own: float = 1.0):
        self.grid, self.own = grid, own
        self._cache: tuple | None = None  # (rows, rows with missing filled, their tiles)

    def _filled(self, x: torch.Tensor):
        if self._cache is None or self._cache[0] is not x:
            filled = torch.where(torch.isnan(x), torch.nanmean(x, 0, keepdim=True), x)
            self._cache = (x, filled, None if self.grid is None else self.grid.tiles(filled))
        return self._cache[1], self._cache[2]

    def embed(self, x, latent):
        filled, tiles = self._filled(x)
        if tiles is None:
            return _with_own_values(None, filled, latent, self.own)
        patches = sorted({self.grid.patch_of(v) for v in latent.variables})
        return _with_own_values(tiles[:, patches].reshape(x.shape[0], -1), filled, latent, self.own)
