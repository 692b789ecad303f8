"""k-means for latent variable distillation: deterministic for a seed, nearest-center
assignments equal to brute force, and the optimal clustering of separated blobs (checked
against all k^N partitions of a small set)."""

import itertools

import numpy as np
import pytest
import torch
from pccompile.ir import ArgumentError

from pccompile.lvd import kmeans


def _blobs(rng, per=3, k=3, dims=2, spread=0.05):
    centers = rng.normal(size=(k, dims)) * 5
    return torch.as_tensor(np.concatenate([c + spread * rng.normal(size=(per, dims)) for c in centers]))


def test_the_same_seed_gives_the_same_clusters(rng):
    x = torch.as_tensor(rng.normal(size=(500, 4)))
    a, b = kmeans(x, 7, seed=3), kmeans(x, 7, seed=3)
    assert torch.equal(a.assign, b.assign) and torch.equal(a.centers, b.centers)
    c = kmeans(x, 7, seed=4)
    assert not torch.equal(a.centers, c.centers)  # the seed matters


def test_assignments_are_the_nearest_centers_by_brute_force(rng):
    x = torch.as_tensor(rng.normal(size=(60, 3)))
    r = kmeans(x, 5, seed=0, chunk=7)  # chunks smaller than the data
    xs, cs = x.numpy(), r.centers.numpy()
    want = [min(range(5), key=lambda j: float(((xs[i] - cs[j]) ** 2).sum())) for i in range(60)]
    assert r.assign.tolist() == want
    np.testing.assert_allclose(r.inertia, sum(((xs[i] - cs[want[i]]) ** 2).sum() for i in range(60)), rtol=1e-9)
    for j in range(5):  # each center is the mean of its rows
        np.testing.assert_allclose(cs[j], xs[np.array(want) == j].mean(0), rtol=1e-9)


@pytest.mark.parametrize("trial", range(3))
def test_separated_blobs_get_the_optimal_partition(rng, trial):
    x = _blobs(rng)
    N, k = x.shape[0], 3
    xs = x.numpy()

    def sse(labels):
        return sum(((xs[labels == j] - xs[labels == j].mean(0)) ** 2).sum() for j in range(k) if (labels == j).any())

    best = min(sse(np.array(lab)) for lab in itertools.product(range(k), repeat=N))
    r = kmeans(x, k, seed=trial)
    np.testing.assert_allclose(r.inertia, best, rtol=1e-9)
    assert len(set(r.assign.tolist())) == k


def test_duplicate_rows_and_bad_arguments():
    x = torch.tensor([[0.0, 0.0]] * 5 + [[1.0, 1.0]] * 5)
    r = kmeans(x, 2, seed=0)
    assert sorted(torch.bincount(r.assign).tolist()) == [5, 5] and r.inertia == 0
    with pytest.raises(ArgumentError, match="1 <= k <= rows"):
        kmeans(x, 11)
    with pytest.raises(ArgumentError, match="non-empty"):
        kmeans(torch.zeros(0, 3), 1)
