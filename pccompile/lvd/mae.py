"""`encoder=mae`: a small masked autoencoder over image patches, trained on the training rows by
the command that needs it (CPU-sized: two Transformer layers of width 32), cached on disk by a
hash of the data and its settings so a second run skips the training.

Each row's image is cut into patches (lvd.encoders.PatchGrid); a random half of the patches is
replaced by a learned mask token, and the model learns to reconstruct the masked patches'
pixels from the rest (the MAE objective; the mask-token form of SimMIM keeps it one encoder).
A patch's embedding is the encoder's output at that patch with nothing masked: it says what the
patch holds in the context of the whole image, which is what the latents of its pixels should
tell apart.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from pccompile.ir import ArgumentError
from pccompile.ir.env import env_value

from .encoders import Encoder, PatchGrid, _with_own_values


@dataclass(frozen=True)
class MAESettings:
    dim: int = 32
    layers: int = 2
    heads: int = 4
    mask: float = 0.5  # fraction of patches masked per row
    steps: int = 1500
    batch: int = 256
    lr: float = 2e-3
    seed: int = 0


class PatchMAE(nn.Module):
    def __init__(self, grid: PatchGrid, s: MAESettings):
        super().__init__()
        d, pixels = s.dim, grid.patch * grid.patch
        self.grid = grid
        self.embed = nn.Linear(pixels, d)
        self.position = nn.Parameter(0.02 * torch.randn(grid.count, d))
        self.mask_token = nn.Parameter(torch.zeros(d))
        layer = nn.TransformerEncoderLayer(d, s.heads, 2 * d, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, s.layers, enable_nested_tensor=False)
        self.decode = nn.Linear(d, pixels)

    def tokens(self, tiles: torch.Tensor, masked: torch.Tensor | None = None) -> torch.Tensor:
        """[B, patches, dim] encoder outputs; `masked` [B, patches] bool: patches hidden."""
        h = self.embed(tiles)
        if masked is not None:
            h = torch.where(masked[..., None], self.mask_token.expand_as(h), h)
        return self.encoder(h + self.position)

    def loss(self, tiles: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        err = (self.decode(self.tokens(tiles, masked)) - tiles).pow(2).mean(2)
        return (err * masked).sum() / masked.sum().clamp_min(1)


def cache_dir() -> Path:
    return Path(env_value("PCC_CACHE") or Path.home() / ".cache" / "pccompile")


def _key(x: torch.Tensor, grid: PatchGrid, s: MAESettings) -> str:
    h = hashlib.sha256()
    h.update(x.detach().cpu().contiguous().numpy().tobytes())
    h.update(
        json.dumps({"shape": list(x.shape), "grid": asdict(grid), **asdict(s), "torch": torch.__version__}).encode()
    )
    return h.hexdigest()[:20]


class MAEEncoder(Encoder):
    """Trains (or loads from the cache) a PatchMAE on fit(x); embed gives, per latent, the mean
    token of its region's patches plus its own values weighted `own`."""

    def __init__(self, grid: PatchGrid, settings: MAESettings | None = None, own: float = 1.0, progress=None):
        self.grid, self.s, self.own, self.progress = grid, settings or MAESettings(), own, progress
        self.model: PatchMAE | None = None
        self.cached: Path | None = None  # where the trained weights were found or written
        self.trained = False
        self._tokens: torch.Tensor | None = None

    def _scaled(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.nan_to_num(x.float(), nan=0.0)
        return x / x.amax().clamp_min(1e-12)

    def prepare(self, x: torch.Tensor) -> None:
        torch.manual_seed(self.s.seed)
        self.model = PatchMAE(self.grid, self.s).to(x.device)

    def fit(self, x: torch.Tensor) -> None:
        xs = self._scaled(x)
        path = cache_dir() / f"mae-{_key(xs, self.grid, self.s)}.pt"
        self.prepare(x)
        if path.exists():
            try:
                self.model.load_state_dict(torch.load(path, map_location=x.device, weights_only=True))
                self.cached = path
            except Exception:  # a damaged cache entry is retrained and rewritten
                self.cached = None
        if self.cached is None:
            self._train(self.grid.tiles(xs))
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")  # two processes never share a temporary
            torch.save(self.model.state_dict(), tmp)
            tmp.replace(path)
            self.cached, self.trained = path, True
        self.after_sharing(x)

    def shared(self) -> list[torch.Tensor]:
        return list(self.model.state_dict().values())  # views of the parameters: updated in place

    @torch.no_grad()
    def after_sharing(self, x: torch.Tensor) -> None:
        """Every patch's token, nothing masked, for the rows embed() will read."""
        self.model.eval()
        tiles = self.grid.tiles(self._scaled(x))
        self._tokens = torch.cat([self.model.tokens(tiles[i : i + 1024]) for i in range(0, len(tiles), 1024)])

    def _train(self, tiles: torch.Tensor) -> None:
        s, model = self.s, self.model
        opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=0.01)
        gen = torch.Generator(device=tiles.device).manual_seed(s.seed)
        # one-cycle: a tenth of the steps warming up (at least 2, or OneCycleLR divides by zero);
        # runs too short for a cycle keep the rate constant
        sched = None
        if s.steps >= 4:
            sched = torch.optim.lr_scheduler.OneCycleLR(
                opt, max_lr=s.lr, total_steps=s.steps, pct_start=max(0.1, 2 / s.steps)
            )
        model.train()
        for step in range(s.steps):
            idx = torch.randint(tiles.shape[0], (min(s.batch, tiles.shape[0]),), generator=gen, device=tiles.device)
            masked = torch.rand(idx.shape[0], self.grid.count, generator=gen, device=tiles.device) < s.mask
            loss = model.loss(tiles[idx], masked)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            if self.progress is not None:
                self.progress(step + 1, s.steps, float(loss.detach()))

    def embed(self, x, latent):
        if self._tokens is None or self._tokens.shape[0] != x.shape[0]:
            raise ArgumentError("MAEEncoder.embed reads the rows fit() was given: call fit(x) first")
        patches = sorted({self.grid.patch_of(v) for v in latent.variables})
        return _with_own_values(self._tokens[:, patches].mean(1), x, latent, self.own)
