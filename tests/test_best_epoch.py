"""Early stopping and best-model selection for plain training (`pcc train --patience`)."""

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import pccompile as pc
from pccompile.io import read
from pccompile.learn import EpochRecord, KeepBest

TINY = "var a : binary\nla[2] = bernoulli(a)\nroot = sum(la)\n"
SPEC = 'var px[64] : categorical(17)\nroot = hclt(px, latents=4, data="builtin:digits", max_rows=400)\n'


def test_keep_best_keeps_the_peak_and_stops_after_patience(tmp_path):
    """A run whose validation LL is made to peak at epoch 3: the model kept is epoch 3's, and
    with patience 2 the run stops after epoch 5."""
    model = pc.compile(TINY)
    trainer = SimpleNamespace(model=model, stopped=False, finish_early=lambda epoch: False)
    hook = KeepBest(tmp_path / "best.pcz", patience=2)
    valid = [-5.0, -4.0, -3.5, -3.6, -3.7, -3.0]
    for epoch, v in enumerate(valid, start=1):
        with torch.no_grad():
            model.sum_logits.fill_(float(epoch))  # the epoch, written into the parameters
        hook(trainer, EpochRecord(epoch, v - 1, v, None, 0.0, 0.1))
        assert trainer.stopped == (epoch >= 5)
        if trainer.stopped:
            break
    assert hook.best.record["epoch"] == 3
    kept = pc.compile(TINY)
    hook.best.load_into(kept)
    assert torch.all(kept.sum_logits == 3.0)


def test_a_stall_moves_on_to_the_finishing_phase_from_the_best_epoch(tmp_path):
    """Validation LL peaks at epoch 2 of the mini-batch phase: after patience 2 (epoch 4) the run
    moves to its finishing phase with epoch 2's parameters, patience counts afresh from there,
    and a second stall (epochs 5 and 6 no better than the best) ends the run."""
    model = pc.compile(TINY)
    moved = []

    def finish_early(epoch):
        if moved:
            return False
        moved.append(epoch)
        return True

    trainer = SimpleNamespace(model=model, stopped=False, finish_early=finish_early)
    hook = KeepBest(tmp_path / "best.pcz", patience=2)
    for epoch, v in enumerate([-5.0, -4.0, -4.5, -4.6, -4.1, -4.2], start=1):
        with torch.no_grad():
            model.sum_logits.fill_(float(epoch))
        hook(trainer, EpochRecord(epoch, v - 1, v, None, 0.0, 0.1))
        if epoch == 4:
            assert moved == [4] and torch.all(model.sum_logits == 2.0)  # back to the best epoch
        assert trainer.stopped == (epoch == 6)
    assert hook.best.record["epoch"] == 2


def _cmd(tmp_path, out, extra=()):
    return [
        "train", str(tmp_path / "s.pc"), "--data", "builtin:digits", "--valid", "builtin:digits:valid",
        "--epochs", "8", "-b", "16", "--step-size", "1.0", "--patience", "2", "-o", str(out), "--samples", "0",
        *extra,
    ]  # fmt: skip


def test_the_saved_model_is_the_best_epoch_and_a_resumed_run_ends_on_the_same_one(tmp_path):
    (tmp_path / "s.pc").write_text(SPEC)
    full = subprocess.run(
        [sys.executable, "-m", "pccompile.cli", *_cmd(tmp_path, tmp_path / "a.pcz")], capture_output=True, text=True
    )
    assert full.returncode == 0, full.stdout + full.stderr
    history = read(tmp_path / "a.ckpt.pcz")[0]["extra"]["train_state"]["history"]
    best = max(history, key=lambda r: r["valid_ll"])
    v = pc.datasets.load_builtin("builtin:digits:valid")
    with torch.no_grad():
        assert float(pc.load(tmp_path / "a.pcz")(v).mean()) == pytest.approx(best["valid_ll"], abs=1e-4)
    if len(history) < 8:  # stopped early: `patience` epochs after the best
        assert len(history) - best["epoch"] == 2
    crash = [sys.executable, str(Path(__file__).parent / "crash_after_epoch.py"), "2"]
    assert subprocess.run(crash + _cmd(tmp_path, tmp_path / "b.pcz"), capture_output=True).returncode == 75
    resumed = subprocess.run(
        [sys.executable, "-m", "pccompile.cli", *_cmd(tmp_path, tmp_path / "b.pcz", ["--resume"])],
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    a, b = read(tmp_path / "a.pcz")[1], read(tmp_path / "b.pcz")[1]
    assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)
    assert f"saved model: epoch {best['epoch']} (best valid LL)" in " ".join(full.stdout.split())


@pytest.mark.parametrize(
    "learner,flag",
    [(["--patience", "2"], "--patience"), (["--prune-grow", "rounds=1,epochs=2,patience=1"], "patience=")],
)
def test_patience_without_validation_data_is_refused(tmp_path, learner, flag):
    from typer.testing import CliRunner

    from pccompile.cli import app

    (tmp_path / "s.pc").write_text(SPEC)
    r = CliRunner().invoke(app, ["train", str(tmp_path / "s.pc"), "--data", "builtin:digits", *learner])
    assert r.exit_code == 2 and f"{flag} needs validation data (--valid)" in " ".join(r.output.split()), r.output


def test_finish_is_refused_with_a_rounds_learner_and_when_negative(tmp_path):
    from pccompile.ir import ArgumentError
    from typer.testing import CliRunner

    from pccompile.cli import app
    from pccompile.learn import TrainConfig

    (tmp_path / "s.pc").write_text(SPEC)
    args = ["train", str(tmp_path / "s.pc"), "--data", "builtin:digits", "--valid", "builtin:digits:valid"]
    r = CliRunner().invoke(app, [*args, "--prune-grow", "rounds=1,epochs=2", "--finish", "1"])
    message = "--finish adds full-batch EM epochs to plain training, not to a rounds learner"
    assert r.exit_code == 2 and message in " ".join(r.output.split()), r.output
    with pytest.raises(ArgumentError, match="--finish expects an integer in 0..1,000,000, got -1"):
        TrainConfig(finish_epochs=-1)
