"""Latent variable distillation end to end: embed each latent's region for every training row,
cluster the embeddings with k-means into the latent's states, and set the circuit's parameters
to the closed-form MLE on the completed data (lvd.counting). EM fine-tuning follows with the
ordinary trainer (`pcc train --lvd ...`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from pccompile.ir import ArgumentError
from pccompile.learn.rounds import parse_settings

from .counting import fit_completed
from .encoders import Encoder, PatchesEncoder, PatchGrid, default_patch
from .kmeans import kmeans
from .mae import MAEEncoder, MAESettings
from .regions import RegionMap, region_map


@dataclass(frozen=True)
class LVDOptions:
    """The `--lvd` settings: 'encoder=mae,clusters=auto,pseudocount=0.1,...'."""

    flag: ClassVar[str] = "--lvd"
    encoder: str = "mae"  # mae | patches
    clusters: str = "auto"  # auto: as many as the latent's states; a number: at most that many
    pseudocount: float = 0.1  # Laplace smoothing of the counting MLE
    patch: int = 0  # image patch side (0: lvd.encoders.default_patch)
    own: float = 1.0  # weight of a region's own values beside its patch embedding
    rows: int = 20000  # rows k-means fits its centres on (all rows are then assigned)
    steps: int = 1500  # MAE training steps
    dim: int = 32  # MAE width
    seed: int = 0

    def __post_init__(self):
        if self.encoder not in ENCODERS:
            raise ArgumentError(f"--lvd: encoder must be one of {', '.join(ENCODERS)}, got '{self.encoder}'")
        if self.clusters != "auto" and not (self.clusters.isdigit() and int(self.clusters) >= 1):
            raise ArgumentError(f"--lvd: clusters is 'auto' or a number >= 1, got '{self.clusters}'")
        if self.pseudocount < 0 or self.patch < 0 or self.own < 0 or self.rows < 1 or self.steps < 1 or self.dim < 4:
            raise ArgumentError(f"--lvd needs pseudocount, patch, own >= 0, rows, steps >= 1 and dim >= 4; got {self}")

    @classmethod
    def parse(cls, text: str) -> "LVDOptions":
        return parse_settings(cls, cls.flag, text)


def _grid(circuit, patch: int) -> PatchGrid | None:
    shape = circuit.meta.get("image")
    if not shape or len(shape) != 2 or int(shape[0]) * int(shape[1]) != circuit.num_vars:
        return None
    shape = (int(shape[0]), int(shape[1]))
    return PatchGrid(shape, patch or default_patch(shape))


def _mae(circuit, o: LVDOptions, progress) -> Encoder:
    grid = _grid(circuit, o.patch)
    if grid is None:
        raise ArgumentError("--lvd encoder=mae needs an image circuit (image = [H, W] in the .pc file)")
    return MAEEncoder(grid, MAESettings(dim=o.dim, steps=o.steps, seed=o.seed), own=o.own, progress=progress)


ENCODERS: dict[str, Callable] = {
    "mae": _mae,
    "patches": lambda circuit, o, progress: PatchesEncoder(_grid(circuit, o.patch), own=o.own),
}


def make_encoder(circuit, options: LVDOptions, progress=None) -> Encoder:
    """The encoder `options.encoder` names, set up for `circuit` (its image grid, if any).
    `progress(step, total, loss)` hears the MAE's training."""
    return ENCODERS[options.encoder](circuit, options, progress)


@dataclass
class LVDReport:
    assignments: np.ndarray  # [N, latents] the state of every latent for every training row
    latents: int
    seconds: dict[str, float]  # encoder, kmeans, mle
    inertia: float  # summed k-means inertia over latents (in standardised units)
    encoder: Encoder


def _as_float(model, x) -> torch.Tensor:
    """Rows as float [N, V] on the model's device, missing entries (-1 / NaN) as NaN."""
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).to(model.device)
    if x.is_floating_point():
        return x.float()
    return torch.where(x < 0, torch.nan, x.float())


@torch.no_grad()
def assign_latents(
    model, x, encoder: Encoder, *, clusters: str = "auto", rows: int = 20000, seed: int = 0, rmap=None, progress=None
) -> tuple[np.ndarray, float]:
    """([N, latents] states from k-means on each latent's embeddings, summed inertia). k-means
    fits on a seeded subset of at most `rows` rows, then every row takes its nearest centre.
    `progress(done, total)` hears each latent finish."""
    rmap: RegionMap = region_map(model.circuit) if rmap is None else rmap
    xf = _as_float(model, x)
    N = xf.shape[0]
    gen = torch.Generator().manual_seed(int(seed))
    fit_rows = torch.randperm(N, generator=gen)[: min(rows, N)].to(model.device)
    z = np.zeros((N, len(rmap.latents)), np.int64)
    inertia = 0.0
    for i, lat in enumerate(rmap.latents):
        k = lat.size if clusters == "auto" else min(int(clusters), lat.size)
        if k > 1:
            e = encoder.embed(xf, lat).float()
            res = kmeans(e[fit_rows], min(k, len(fit_rows)), seed=seed + lat.id)
            d = torch.cdist(e, res.centers)
            z[:, lat.id] = d.argmin(1).cpu().numpy()
            inertia += res.inertia
        if progress is not None:
            progress(i + 1, len(rmap.latents))
    return z, inertia


def distill(
    model, x, options: LVDOptions | None = None, *, encoder: Encoder | None = None, on_mae=None, on_latent=None
):
    """Set `model`'s parameters by LVD from training rows x [N, V] (in place); returns an
    LVDReport. `encoder` (any lvd.encoders.Encoder: a user's module, precomputed arrays) replaces
    the one `options.encoder` names."""
    o = options or LVDOptions()
    rmap = region_map(model.circuit)
    t0 = time.perf_counter()
    enc = encoder if encoder is not None else make_encoder(model.circuit, o, on_mae)
    xf = _as_float(model, x)  # once: assign_latents takes it as it is, and encoders cache by it
    enc.fit(xf)
    t1 = time.perf_counter()
    z, inertia = assign_latents(
        model, xf, enc, clusters=o.clusters, rows=o.rows, seed=o.seed, rmap=rmap, progress=on_latent
    )
    t2 = time.perf_counter()
    fit_completed(model, x, z, pseudocount=o.pseudocount, rmap=rmap)
    t3 = time.perf_counter()
    return LVDReport(z, len(rmap.latents), {"encoder": t1 - t0, "kmeans": t2 - t1, "mle": t3 - t2}, inertia, enc)
