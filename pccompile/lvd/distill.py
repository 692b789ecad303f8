"""Latent variable distillation end to end: embed each latent's region for every training row,
cluster the embeddings with k-means into the latent's states, and set the circuit's parameters
to the closed-form MLE on the completed data (lvd.counting). EM fine-tuning follows with the
ordinary trainer (`pcc train --lvd ...`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

import numpy as np
import torch

from pccompile.ir import ArgumentError
from pccompile.ir.limits import MAX_VARIABLES, MAX_VECTOR_SIZE
from pccompile.ir.options import NonNegative, Range, Seed, check_fields, parse_options

from .counting import fit_completed
from .encoders import Encoder, PatchesEncoder, PatchGrid, default_patch
from .kmeans import kmeans
from .mae import MAEEncoder, MAESettings
from .regions import RegionMap, region_map


@dataclass(frozen=True)
class LVDOptions:
    """The `--lvd` settings: 'encoder=mae,clusters=auto,pseudocount=0.1,...'."""

    flag: ClassVar[str] = "--lvd"
    encoder: Literal["mae", "patches"] = "mae"  # the ENCODERS below
    # auto: as many as the latent's states; a number: at most that many
    clusters: Literal["auto"] | Annotated[int, Range(1, MAX_VECTOR_SIZE)] = "auto"
    pseudocount: NonNegative = 0.1  # Laplace smoothing of the counting MLE
    patch: Annotated[int, Range(0, MAX_VARIABLES)] = 0  # image patch side (0: lvd.encoders.default_patch)
    own: Annotated[float, Range(0, 1000)] = 1.0  # weight of a region's own values beside its patch embedding
    rows: Annotated[int, Range(1, 10**9)] = 20000  # rows k-means fits its centres on (all rows are then assigned)
    steps: Annotated[int, Range(1, 10**8)] = 1500  # MAE training steps
    dim: Annotated[int, Range(4, 4096)] = 32  # MAE width
    seed: Seed = 0

    def __post_init__(self):
        check_fields(self, f"{self.flag}: option '{{name}}'")

    @classmethod
    def parse(cls, text: str) -> "LVDOptions":
        return parse_options(cls, text, cls.flag)


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
    assignments: np.ndarray  # [N, latents] the state of every latent for every training row (of this rank's shard)
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


def _clusters(lat, clusters: str, fit_rows: int) -> int:
    k = lat.size if clusters == "auto" else min(int(clusters), lat.size)  # int(): the API may pass "8"
    return min(k, fit_rows)


@torch.no_grad()
def assign_latents(
    model,
    x,
    encoder: Encoder,
    *,
    clusters: str | int = "auto",
    rows: int = 20000,
    seed: int = 0,
    rmap=None,
    progress=None,
    group=None,
) -> tuple[np.ndarray, float]:
    """([N, latents] states from k-means on each latent's embeddings, summed inertia). k-means
    fits on a seeded subset of at most `rows` rows, then every row takes its nearest centre.
    `progress(done, total)` hears each latent finish. `group` (learn.distributed): each rank
    runs k-means for its share of the latents, the centres are all-reduced, and each rank
    assigns its shard of the rows (the states returned are that shard's)."""
    rmap: RegionMap = region_map(model.circuit) if rmap is None else rmap
    xf = _as_float(model, x)
    N = xf.shape[0]
    gen = torch.Generator().manual_seed(int(seed))
    fit_rows = torch.randperm(N, generator=gen)[: min(rows, N)].to(model.device)
    todo = [lat for lat in rmap.latents if _clusters(lat, clusters, len(fit_rows)) > 1]
    mine = todo if group is None else todo[group.rank :: group.world]
    own_rows = slice(0, N) if group is None else group.shard(N)
    z = np.zeros((own_rows.stop - own_rows.start, len(rmap.latents)), np.int64)
    centers, inertia = {}, 0.0
    for i, lat in enumerate(mine):  # k-means for this rank's latents (all of them alone)
        e = encoder.embed(xf, lat).float()
        res = kmeans(e[fit_rows], _clusters(lat, clusters, len(fit_rows)), seed=seed + lat.id)
        centers[lat.id], inertia = res.centers, inertia + res.inertia
        z[:, lat.id] = torch.cdist(e[own_rows], res.centers).argmin(1).cpu().numpy()
        if progress is not None:
            progress(i + 1, len(todo))
    if group is None:
        return z, inertia
    mine_ids = set(centers)
    centers, inertia = _share_centers(group, todo, centers, inertia, model.device)
    others = [lat for lat in todo if lat.id not in mine_ids]
    for i, lat in enumerate(others):  # the other ranks' centres, now here: this rank's rows
        e = encoder.embed(xf, lat).float()[own_rows]
        z[:, lat.id] = torch.cdist(e, centers[lat.id]).argmin(1).cpu().numpy()
        if progress is not None:
            progress(len(mine) + i + 1, len(todo))
    return z, inertia


def _share_centers(group, todo, centers: dict, inertia: float, device) -> tuple[dict, float]:
    """Every rank's k-means centres on every rank: their shapes, then the centres and the
    inertia, summed into buffers that are zero where another rank fills them."""
    shapes = torch.zeros(len(todo), 2, dtype=torch.float64, device=device)
    for j, lat in enumerate(todo):
        if lat.id in centers:
            shapes[j] = torch.tensor(centers[lat.id].shape, dtype=torch.float64)
    total = torch.tensor([inertia], dtype=torch.float64, device=device)
    group.sum_([shapes, total])
    full = {
        lat.id: centers.get(lat.id, torch.zeros(*(int(v) for v in shapes[j]), dtype=torch.float32, device=device))
        for j, lat in enumerate(todo)
    }
    group.sum_(list(full.values()))  # own centres plus zeros: unchanged, bit for bit
    return full, float(total.item())


def distill(
    model,
    x,
    options: LVDOptions | None = None,
    *,
    encoder: Encoder | None = None,
    on_mae=None,
    on_latent=None,
    group=None,
):
    """Set `model`'s parameters by LVD from training rows x [N, V] (in place); returns an
    LVDReport. `encoder` (any lvd.encoders.Encoder: a user's module, precomputed arrays) replaces
    the one `options.encoder` names. `group` (learn.distributed): rank 0 fits the encoder and
    shares what it learned, k-means is split by latent and the counts are all-reduced, so every
    rank ends with the same parameters (the report's assignments are this rank's rows)."""
    o = options or LVDOptions()
    if group is not None:
        group.check_same_data({"train": x}, model, o)
    rmap = region_map(model.circuit)
    t0 = time.perf_counter()
    enc = encoder if encoder is not None else make_encoder(model.circuit, o, on_mae)
    xf = _as_float(model, x)  # once: assign_latents takes it as it is, and encoders cache by it
    _fit_encoder(enc, xf, group)
    t1 = time.perf_counter()
    z, inertia = assign_latents(
        model, xf, enc, clusters=o.clusters, rows=o.rows, seed=o.seed, rmap=rmap, progress=on_latent, group=group
    )
    t2 = time.perf_counter()
    rows = x if group is None else x[group.shard(len(x))]
    fit_completed(model, rows, z, pseudocount=o.pseudocount, rmap=rmap, group=group)
    if group is not None:
        group.check_in_sync(model.state_dict().values(), "after LVD")
    t3 = time.perf_counter()
    return LVDReport(z, len(rmap.latents), {"encoder": t1 - t0, "kmeans": t2 - t1, "mle": t3 - t2}, inertia, enc)


def _fit_encoder(enc: Encoder, xf: torch.Tensor, group) -> None:
    """fit() here, or data-parallel: on rank 0 (which alone trains and writes the cache, its
    training steps telling the waiting ranks it lives), the learned tensors then broadcast."""
    if group is None:
        enc.fit(xf)
        return
    if group.is_main:
        beat, hear = group.keep_alive(), getattr(enc, "progress", None)
        if hasattr(enc, "progress"):  # an encoder that trains reports its steps here
            enc.progress = lambda *step: (beat(), hear and hear(*step))
        try:
            enc.fit(xf)
        finally:
            if hasattr(enc, "progress"):
                enc.progress = hear
        group.release()
    else:
        enc.prepare(xf)
        group.wait_for_main()
    group.broadcast_(enc.shared())
    if not group.is_main:
        enc.after_sharing(xf)
