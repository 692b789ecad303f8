"""LVD end to end (pccompile.lvd.distill): embeddings -> k-means -> counting MLE. Planted
clusters are recovered from precomputed arrays and from a user's torch module alike; LVD on the
digits starts far above a random initialisation; the MAE encoder is cached by a hash of its data
and settings and retrains over a damaged cache entry; `pcc train --lvd` runs, and skips LVD when
resuming; bad settings are refused with the setting named."""

import numpy as np
import pytest
import torch
from pccompile.ir import ArgumentError, Domain, Variable
from typer.testing import CliRunner

import pccompile as pc
from pccompile.cli import app
from pccompile.datasets import load_builtin
from pccompile.learn.trainer import mean_log_likelihood
from pccompile.lvd import (
    ArrayEncoder,
    LVDOptions,
    ModuleEncoder,
    PatchGrid,
    assign_latents,
    distill,
    fit_completed,
    region_map,
)
from pccompile.lvd.mae import MAEEncoder, MAESettings
from pccompile.structures import hclt

runner = CliRunner()


def _small_hclt(rng, latents=3):
    x = rng.integers(0, 3, size=(200, 5))
    variables = [Variable(f"x{i}", Domain(3)) for i in range(5)]
    return pc.compile(pc.build(hclt(x, latents=latents, num_cats=3), variables)), x


def _planted(rng, model, n):
    """Per latent, embeddings drawn around one far-apart centre per state, and those states."""
    rmap = region_map(model.circuit)
    states = np.stack([rng.integers(0, lat.size, n) for lat in rmap.latents], 1)
    emb = np.zeros((n, len(rmap.latents), 4), np.float32)
    for lat in rmap.latents:
        centres = 10 * rng.normal(size=(lat.size, 4))
        emb[:, lat.id] = centres[states[:, lat.id]] + 0.1 * rng.normal(size=(n, 4))
    return rmap, states, emb


def _same_partition(a, b):
    """Equal up to renaming the clusters."""
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_planted_clusters_are_recovered_from_arrays_and_from_a_module(rng):
    model, x = _small_hclt(rng)
    rmap, states, emb = _planted(rng, model, len(x))
    z, _ = assign_latents(model, x, ArrayEncoder(emb), seed=3)
    for lat in rmap.latents:
        if lat.size > 1:
            assert _same_partition(z[:, lat.id], states[:, lat.id]), lat.name

    table = torch.as_tensor(emb)

    class Lookup(torch.nn.Module):  # a "pretrained model": row i's embeddings, found by its values
        def forward(self, xb):
            idx = [int(np.flatnonzero((x == xb[i].numpy()).all(1))[0]) for i in range(len(xb))]
            return table[idx]

    x = np.unique(x, axis=0)  # rows must identify themselves for the lookup
    _, states, emb = _planted(rng, model, len(x))
    table = torch.as_tensor(emb)
    z1, _ = assign_latents(model, x, ArrayEncoder(emb), seed=3)
    z2, _ = assign_latents(model, x, ModuleEncoder(Lookup(), batch=7), seed=3)
    np.testing.assert_array_equal(z1, z2)


def test_lvd_on_the_digits_starts_far_above_random_init():
    train, valid = load_builtin("builtin:digits"), load_builtin("builtin:digits:valid")
    model = pc.compile("examples/digits.pc", seed=0)
    before = mean_log_likelihood(model, valid)
    report = distill(model, train, LVDOptions(encoder="patches"))
    after = mean_log_likelihood(model, valid)
    assert report.assignments.shape == (len(train), report.latents)
    assert after > before + 50  # random init: about -185 nats; LVD: about -93
    again = pc.compile("examples/digits.pc", seed=0)
    distill(again, train, LVDOptions(encoder="patches"))
    assert mean_log_likelihood(again, valid) == pytest.approx(after, abs=1e-5)  # seeded


def test_mae_is_cached_by_data_and_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("PCC_CACHE", str(tmp_path))
    x = torch.as_tensor(load_builtin("builtin:digits")[:200]).float()
    grid, s = PatchGrid((8, 8), 2), MAESettings(steps=15, dim=8, heads=2)
    first = MAEEncoder(grid, s)
    first.fit(x)
    assert first.trained and first.cached.exists()
    second = MAEEncoder(grid, s)
    second.fit(x)
    assert not second.trained and second.cached == first.cached
    torch.testing.assert_close(second._tokens, first._tokens)
    other = MAEEncoder(grid, MAESettings(steps=16, dim=8, heads=2))
    other.fit(x)
    assert other.trained and other.cached != first.cached  # other settings: another entry
    first.cached.write_bytes(b"not a checkpoint")
    third = MAEEncoder(grid, s)
    third.fit(x)
    assert third.trained  # the damaged entry was retrained and rewritten
    lat = region_map(pc.compile("examples/digits.pc").circuit).latents[0]
    assert third.embed(x, lat).shape == (200, 8 + len(lat.variables))


@pytest.mark.parametrize("steps", [1, 3, 10])
def test_mae_trains_for_any_number_of_steps(steps, tmp_path, monkeypatch):
    monkeypatch.setenv("PCC_CACHE", str(tmp_path))
    x = torch.as_tensor(load_builtin("builtin:digits")[:64]).float()
    enc = MAEEncoder(PatchGrid((8, 8), 2), MAESettings(steps=steps, dim=8, heads=2))
    enc.fit(x)
    assert enc.trained and torch.isfinite(enc._tokens).all()


def test_patch_grid_tiles_and_finds_patches():
    grid = PatchGrid((5, 6), 2)  # ragged: 3 x 3 patches
    x = torch.arange(30.0).reshape(1, 30)
    tiles = grid.tiles(x)
    assert tiles.shape == (1, 9, 4)
    assert tiles[0, 0].tolist() == [0, 1, 6, 7] and tiles[0, 8].tolist() == [28, 29, 0, 0]
    assert grid.patch_of(0) == 0 and grid.patch_of(29) == 8 and grid.patch_of(13) == 3


@pytest.mark.parametrize(
    "text,word",
    [
        ("encoder=vae", "option 'encoder' expects one of mae, patches"),
        ("clusters=many", "clusters"),
        ("clusters=²", "--lvd: option 'clusters' expects auto or an integer in 1..65,536, got '²'"),
        ("seed=100000000000000000000", r"--lvd: option 'seed' expects an integer in 0..2\^63-1"),
        ("rows=1e300", r"--lvd: option 'rows' expects an integer in 1..1,000,000,000, got '1e300'"),
        ("size=3", "--lvd has no option 'size'"),
        ("pseudocount=-1", "option 'pseudocount' expects a finite number >= 0, got '-1'"),
    ],
)
def test_bad_lvd_settings_are_named(text, word):
    with pytest.raises(ArgumentError, match=word):
        LVDOptions.parse(text)


def test_embeddings_and_assignments_of_the_wrong_rows_are_refused(rng):
    model, x = _small_hclt(rng)
    rmap, states, emb = _planted(rng, model, len(x))
    with pytest.raises(ArgumentError, match=r"embeddings of .* have 199 rows, the data 200"):
        assign_latents(model, x, ArrayEncoder(emb[:199]))
    with pytest.raises(ArgumentError, match="200 data rows but 199 rows of assignments"):
        fit_completed(model, x, states[:199])
    enc = MAEEncoder(PatchGrid((8, 8), 2))
    with pytest.raises(ArgumentError, match=r"call fit\(x\) first"):
        enc.embed(torch.zeros(3, 64), rmap.latents[0])


def test_mae_needs_an_image(rng):
    model, x = _small_hclt(rng)
    with pytest.raises(ArgumentError, match="image"):
        distill(model, x, LVDOptions(encoder="mae"))


def test_pcc_train_lvd_runs_and_resume_skips_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PCC_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "m.pcz"
    base = ["train", "examples/digits.pc", "--data", "builtin:digits", "--valid", "builtin:digits:valid"]
    base += ["-o", str(out), "--samples", "0"]
    lvd = ["--lvd", "encoder=mae,steps=20,dim=8"]
    r = runner.invoke(app, [*base, *lvd, "--epochs", "1"])
    assert r.exit_code == 0, r.output
    assert "LVD: encoder mae (trained, cached at" in r.output and out.exists()
    r = runner.invoke(app, [*base, *lvd, "--epochs", "2"])  # the same MAE: from the cache
    assert r.exit_code == 0, r.output
    assert "LVD: encoder mae (loaded from" in r.output
    r = runner.invoke(app, [*base, *lvd, "--epochs", "3", "--resume"])
    assert r.exit_code == 0, r.output
    assert "LVD:" not in r.output and "resuming" in r.output
    r = runner.invoke(app, [*base, "--lvd", "encoder=nope"])
    assert r.exit_code == 2 and "option 'encoder' expects one of" in r.output
