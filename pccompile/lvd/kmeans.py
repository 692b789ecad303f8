"""k-means in torch, for assigning latent states from embeddings: k-means++ seeding, then
Lloyd's iterations, chunked over rows so the [N, k] distances never exist at once, on the
embeddings' own device, deterministic for a seed (a seeded generator on that device)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pccompile.ir import ArgumentError


@dataclass
class KMeansResult:
    centers: torch.Tensor  # [k, D]
    assign: torch.Tensor  # [N] cluster of each row (int64)
    inertia: float  # sum of squared distances of rows to their centers
    iterations: int


def _nearest(x: torch.Tensor, centers: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """([N] index of the nearest center, [N] squared distance to it), ties to the lower index."""
    c2 = (centers * centers).sum(1)
    idx, dist = [], []
    for i in range(0, x.shape[0], chunk):
        xs = x[i : i + chunk]
        d = (xs * xs).sum(1, keepdim=True) - 2 * xs @ centers.T + c2
        v, j = d.min(1)
        idx.append(j)
        dist.append(v.clamp_min(0))
    return torch.cat(idx), torch.cat(dist)


def _plus_plus(x: torch.Tensor, k: int, gen: torch.Generator, chunk: int) -> torch.Tensor:
    """k-means++: the first center uniformly, each next one with probability proportional to
    the squared distance to the nearest chosen center (a duplicate row when all are chosen)."""
    N = x.shape[0]
    first = int(torch.randint(N, (1,), generator=gen, device=x.device))
    centers = x[first : first + 1].clone()
    _, d = _nearest(x, centers, chunk)
    for _ in range(1, k):
        total = d.sum()
        if float(total) > 0:
            nxt = int(torch.multinomial(d / total, 1, generator=gen))
        else:
            nxt = int(torch.randint(N, (1,), generator=gen, device=x.device))
        centers = torch.cat([centers, x[nxt : nxt + 1]])
        d = torch.minimum(d, ((x - x[nxt]) ** 2).sum(1))
    return centers


def kmeans(
    x: torch.Tensor, k: int, *, seed: int = 0, iterations: int = 100, chunk: int = 65536, tol: float = 0.0
) -> KMeansResult:
    """Cluster the rows of x [N, D] into k clusters. Lloyd's iterations stop when no assignment
    changes (or the inertia improves by at most `tol` relative). An emptied cluster takes the
    row farthest from its center, so every cluster keeps a row while there are k distinct rows."""
    if x.ndim != 2 or x.shape[0] == 0:
        raise ArgumentError(f"kmeans needs a non-empty [rows, dims] tensor, got shape {tuple(x.shape)}")
    if not 1 <= k <= x.shape[0]:
        raise ArgumentError(f"kmeans needs 1 <= k <= rows ({x.shape[0]}), got k={k}")
    x = x.float() if not x.is_floating_point() else x
    gen = torch.Generator(device=x.device).manual_seed(int(seed))
    centers = _plus_plus(x, k, gen, chunk)
    assign, dist = _nearest(x, centers, chunk)
    inertia = float(dist.sum())
    it = 0
    for it in range(1, iterations + 1):
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        sums = torch.zeros_like(centers).index_add_(0, assign, x)
        centers = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centers)
        for empty in torch.nonzero(counts == 0).flatten().tolist():
            far = int(dist.argmax())
            centers[empty] = x[far]
            dist[far] = 0
        new_assign, dist = _nearest(x, centers, chunk)
        new_inertia = float(dist.sum())
        done = torch.equal(new_assign, assign) or inertia - new_inertia <= tol * max(inertia, 1e-300)
        assign, inertia = new_assign, new_inertia
        if done:
            break
    return KMeansResult(centers, assign, inertia, it)
