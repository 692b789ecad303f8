"""Training: the CLI end to end, exact resume after a crash, and gradient training in torch loops."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pccompile.ir import ArgumentError

import pccompile as pc
from pccompile.io import read
from pccompile.learn import TrainConfig

SPEC = """var x[6] : categorical(3)
root = rat_spn(x, depth=1, repetitions=2, sums=3, inputs=3, seed=1)
"""


def _train_cmd(tmp_path, out, extra=()):
    return [
        sys.executable,
        "-m",
        "pccompile.cli",
        "train",
        str(tmp_path / "s.pc"),
        "--data",
        str(tmp_path / "x.npy"),
        "--valid",
        str(tmp_path / "x.npy"),
        "--epochs",
        "4",
        "-b",
        "64",
        "-o",
        str(out),
        "--samples",
        "0",
        *extra,
    ]


@pytest.mark.parametrize("optimizer", ["em", "adam"])
def test_killed_and_resumed_equals_uninterrupted(tmp_path, optimizer):
    (tmp_path / "s.pc").write_text(SPEC)
    np.save(tmp_path / "x.npy", np.random.default_rng(0).integers(0, 3, size=(300, 6)))
    opt = ["--optimizer", optimizer]
    full = subprocess.run(_train_cmd(tmp_path, tmp_path / "a.pcz", opt), capture_output=True, text=True)
    assert full.returncode == 0, full.stdout + full.stderr
    crash = [sys.executable, str(Path(__file__).parent / "crash_after_epoch.py"), "2"]
    crashed = subprocess.run(crash + _train_cmd(tmp_path, tmp_path / "b.pcz", opt)[3:], capture_output=True, text=True)
    assert crashed.returncode == 75 and not (tmp_path / "b.pcz").exists()
    resumed = subprocess.run(
        _train_cmd(tmp_path, tmp_path / "b.pcz", [*opt, "--resume"]), capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming from" in resumed.stdout and "(checkpoint)" in resumed.stdout
    _, a = read(tmp_path / "a.pcz")
    _, b = read(tmp_path / "b.pcz")
    state = [k for k in a if k.startswith("state.")]
    assert state
    for k in state:
        np.testing.assert_array_equal(a[k], b[k])  # bit for bit
    assert (tmp_path / "b_curve.png").stat().st_size > 1000


def test_train_cli_reports_and_rejects_bad_data(tmp_path):
    (tmp_path / "s.pc").write_text(SPEC)
    bad = np.zeros((10, 6), dtype=np.int64)
    bad[3, 2] = 9
    np.save(tmp_path / "x.npy", bad)
    r = subprocess.run(_train_cmd(tmp_path, tmp_path / "m.pcz"), capture_output=True, text=True)
    assert r.returncode == 2
    assert "variable 'x[2]' (column 2) has value 9 in row 3" in r.stderr and "Traceback" not in r.stderr


def test_adam_inside_an_ordinary_torch_loop_with_a_neural_net():
    """The circuit trains jointly with an upstream network: gradients reach both."""
    model = pc.compile(
        "var a, b : real\nla[3] = gaussian(a)\nlb[3] = gaussian(b)\np = product(la, lb)\nroot = sum(p)\n", seed=0
    )
    net = torch.nn.Linear(2, 2)
    opt = torch.optim.Adam([*model.parameters(), *net.parameters()], lr=0.05)
    z = torch.randn(256, 2)
    first = None
    for _ in range(60):
        opt.zero_grad()
        loss = -model(net(z)).mean() - torch.slogdet(net.weight)[1]  # a normalising-flow-style objective
        loss.backward()
        assert net.weight.grad is not None and model.sum_logits.grad is not None
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < first - 0.1


def test_ctrl_c_saves_and_says_how_to_resume(tmp_path):
    import signal
    import time

    (tmp_path / "s.pc").write_text(SPEC)
    np.save(tmp_path / "x.npy", np.random.default_rng(0).integers(0, 3, size=(20000, 6)))
    cmd = _train_cmd(tmp_path, tmp_path / "m.pcz", ["--epochs", "100000"])  # far longer than the wait
    # a shell that started the tests in the background ignores SIGINT, and children inherit that
    default_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    ckpt = tmp_path / "m.ckpt.pcz"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline:
        time.sleep(0.2)
    assert ckpt.exists(), "no checkpoint was written"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "--resume" in err and str(ckpt) in err and "Traceback" not in err
    read(ckpt)  # the checkpoint is intact


def _grown(model):
    """A different model over the same variables (stands in for a pruned or grown circuit)."""
    return pc.compile(
        "var x[6] : categorical(3)\nroot = rat_spn(x, depth=1, repetitions=3, sums=4, inputs=2, seed=2)\n", seed=5
    )


@pytest.mark.parametrize("optimizer", ["em", "adam"])
def test_a_hook_between_epochs_can_swap_the_model_and_the_schedule_restarts_per_phase(tmp_path, optimizer):
    from pccompile.learn import TrainConfig, Trainer

    x = np.random.default_rng(1).integers(0, 3, size=(200, 6))
    cfg = TrainConfig(
        epochs=4,
        batch_size=50,
        optimizer=optimizer,
        step_size=0.4,
        step_size_end=0.1,
        schedule="linear",
        phase_epochs=2,
    )
    swapped = []

    def hook(trainer, rec):
        if rec.epoch == 2:
            swapped.append(_grown(trainer.model))
            return swapped[-1]
        return None

    first = pc.compile(SPEC)
    t = Trainer(first, cfg, x, checkpoint=tmp_path / "c.pcz", between_epochs=hook)
    hist = t.run()
    assert t.model is swapped[0] and t.phase_start == 2
    steps = [r.step_size for r in hist]
    assert steps[0] == pytest.approx(steps[2]) and steps[1] == pytest.approx(steps[3]) == pytest.approx(0.1)
    back = pc.load(tmp_path / "c.pcz")  # the checkpoint holds the swapped model
    assert back.circuit.stats() == swapped[0].circuit.stats()
    if optimizer == "adam":
        assert t.optimizer.param_groups[0]["params"][0] is next(swapped[0].parameters())


def test_resume_after_a_swap_continues_exactly(tmp_path):
    from pccompile.learn import TrainConfig, Trainer

    x = np.random.default_rng(1).integers(0, 3, size=(200, 6))
    cfg = TrainConfig(epochs=4, batch_size=50, optimizer="em", schedule="linear", step_size_end=0.02, phase_epochs=2)

    def hook(trainer, rec):
        return _grown(trainer.model) if rec.epoch == 2 else None

    full = Trainer(pc.compile(SPEC), cfg, x, between_epochs=hook)
    full.run()
    part_cfg = TrainConfig(**{**cfg.__dict__, "epochs": 3})  # stop after epoch 3, as a crash would
    part = Trainer(pc.compile(SPEC), part_cfg, x, checkpoint=tmp_path / "c.pcz", between_epochs=hook)
    part.run()
    resumed = Trainer(pc.load(tmp_path / "c.pcz"), cfg, x, checkpoint=tmp_path / "c.pcz", between_epochs=hook)
    resumed.restore()
    assert resumed.start_epoch == 3 and resumed.phase_start == 2
    resumed.run()
    for k, v in full.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[k], v, rtol=0, atol=0)


def test_the_three_phase_schedule_passes_through_the_released_codes_knots():
    from pccompile.learn import step_size_at

    knots = [step_size_at("three-phase", 0.3, 0.001, p) for p in (0, 1 / 3, 2 / 3, 1)]
    np.testing.assert_allclose(knots, [0.3, 0.1, 0.01, 0.001], rtol=1e-12)
    assert step_size_at("three-phase", 0.3, 0.001, 1 / 6) == pytest.approx(0.2)  # linear inside a phase
    steps = [step_size_at("three-phase", 0.3, 0.001, p) for p in np.linspace(0, 1, 50)]
    assert all(a >= b for a, b in zip(steps, steps[1:]))
    with pytest.raises(ArgumentError, match="three-phase"):
        TrainConfig(schedule="stairs")
    # the HCLT recipe starts at 1: the middle knots are decades above the end, not start / 3
    knots = [step_size_at("three-phase", 1.0, 0.001, p) for p in (0, 1 / 3, 2 / 3, 1)]
    np.testing.assert_allclose(knots, [1.0, 0.1, 0.01, 0.001], rtol=1e-12)
    assert step_size_at("three-phase", 0.05, 0.001, 1 / 3) == pytest.approx(0.05)  # never above the start


def test_explicit_step_knots_and_dropping_the_last_partial_batch():
    """--step-size 1,0.1,0.01,0.001: equal linear phases through the knots; --drop-last: each
    epoch steps on the full batches only (the released codes' loop), the mean LL over their rows."""
    from pccompile.learn import step_size_at
    from pccompile.learn.trainer import Trainer

    cfg = TrainConfig(step_knots=(1.0, 0.1, 0.01, 0.001))
    assert (cfg.step_size, cfg.step_size_end) == (1.0, 0.001)
    got = [step_size_at(cfg.schedule, cfg.step_size, cfg.step_size_end, p, cfg.step_knots) for p in (0, 0.5, 1 / 6)]
    np.testing.assert_allclose(got, [1.0, 0.055, 0.55], rtol=1e-12)
    with pytest.raises(ArgumentError, match="knots must lie in"):
        TrainConfig(step_knots=(1.0, 2.0, 0.1))
    with pytest.raises(ArgumentError, match="at least two"):
        TrainConfig(step_knots=(0.5,))
    model = pc.compile(SPEC)
    x = np.random.default_rng(0).integers(0, 3, (50, model.num_vars))
    sizes = []
    for drop in (False, True):
        trainer = Trainer(model, TrainConfig(epochs=1, batch_size=16, drop_last=drop), x)
        step = trainer.strategy.step
        trainer.strategy.step = lambda xi, xr, a, step=step: sizes.append((drop, len(xi))) or step(xi, xr, a)
        trainer.run()
    assert [s for d, s in sizes if not d] == [16, 16, 16, 2] and [s for d, s in sizes if d] == [16, 16, 16]


def test_finishing_epochs_are_full_batch_em_steps():
    """After `epochs` mini-batch epochs, each finishing epoch is one EM update with step 1 on the
    flows of the whole training set: checked against that update done by hand."""
    from pccompile.analysis.flows import dataset_flows
    from pccompile.learn import Trainer, em_update

    x = np.random.default_rng(1).integers(0, 3, size=(300, 6))
    cfg = dict(epochs=2, batch_size=64, step_size=0.3, pseudocount=0.1)
    by_hand = pc.compile(SPEC)
    Trainer(by_hand, TrainConfig(**cfg), x).run()
    em_update(by_hand, dataset_flows(by_hand, x, batch_size=64), 1.0, 0.1)
    finished = pc.compile(SPEC)
    history = Trainer(finished, TrainConfig(**cfg, finish_epochs=1), x).run()
    assert len(history) == 3 and history[-1].step_size == 1.0 and history[1].step_size == 0.3
    for p, q in zip(by_hand.parameters(), finished.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6)


def test_a_run_killed_in_its_finishing_phase_resumes_exactly(tmp_path):
    (tmp_path / "s.pc").write_text(SPEC)
    np.save(tmp_path / "x.npy", np.random.default_rng(0).integers(0, 3, size=(300, 6)))
    finish = ["--finish", "2"]
    full = subprocess.run(_train_cmd(tmp_path, tmp_path / "a.pcz", finish), capture_output=True, text=True)
    assert full.returncode == 0, full.stdout + full.stderr
    crash = [sys.executable, str(Path(__file__).parent / "crash_after_epoch.py"), "5"]  # the first finishing epoch
    crashed = subprocess.run(crash + _train_cmd(tmp_path, tmp_path / "b.pcz", finish)[3:], capture_output=True)
    assert crashed.returncode == 75
    resumed = subprocess.run(
        _train_cmd(tmp_path, tmp_path / "b.pcz", [*finish, "--resume"]), capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    a, b = read(tmp_path / "a.pcz")[1], read(tmp_path / "b.pcz")[1]
    assert all(np.array_equal(a[k], b[k]) for k in a if k.startswith("state."))
    history = read(tmp_path / "b.ckpt.pcz")[0]["extra"]["train_state"]["history"]
    assert [r["step_size"] for r in history][-2:] == [1.0, 1.0] and len(history) == 6


def test_a_hook_can_start_the_finishing_phase_early_and_a_resume_keeps_it(tmp_path):
    """finish_early at epoch 2 of 6 (+2 finishing): the run is epochs 1-2 mini-batch, 3-4
    full-batch (step 1), then ends; the checkpoint records where finishing began, a restored
    trainer ends there too, and a record whose start does not fit its epoch is refused."""
    from pccompile.ir import FormatError

    from pccompile.learn import Trainer
    from pccompile.learn.strategies import FullBatchEM

    x = np.random.default_rng(2).integers(0, 3, size=(200, 6))
    cfg = TrainConfig(epochs=6, batch_size=64, step_size=0.3, finish_epochs=2)

    def hook(trainer, rec):
        if rec.epoch == 2:
            assert trainer.finish_early(2) and not trainer.finish_early(2)  # only once
        return None

    ckpt = tmp_path / "c.pcz"
    trainer = Trainer(pc.compile(SPEC), cfg, x, checkpoint=ckpt, between_epochs=hook)
    history = trainer.run()
    assert [r.step_size for r in history] == [history[0].step_size, history[1].step_size, 1.0, 1.0]
    assert history[1].step_size != 1.0 and isinstance(trainer.strategy, FullBatchEM)
    again = Trainer(pc.compile(SPEC), cfg, x, checkpoint=ckpt)
    again.restore()
    assert again.finish_from == 2 and again.total_epochs == 4 and again.start_epoch == 4
    assert again.run() == again.history and len(again.history) == 4  # nothing left to train
    trainer.finish_from = 9
    trainer.save_checkpoint()
    with pytest.raises(FormatError, match="finishing start 9 does not fit epoch 4"):
        Trainer(pc.compile(SPEC), cfg, x, checkpoint=ckpt).restore()


def test_learning_curve_draws_a_split_that_began_mid_run(tmp_path):
    """A run resumed with --valid added has no valid LL for its first epochs: those are gaps in
    the plot, not a crash."""
    from pccompile.io.plots import learning_curve
    from pccompile.learn.trainer import EpochRecord

    history = [EpochRecord(1, -90.0, None, None, 0.1, 0.1), EpochRecord(2, -89.0, -91.0, None, 0.1, 0.1)]
    learning_curve(history, tmp_path / "c.png", 64)
    assert (tmp_path / "c.png").stat().st_size > 0


def test_the_cli_takes_step_knots_and_names_a_bad_one(tmp_path):
    from typer.testing import CliRunner

    from pccompile.cli import app

    spec = tmp_path / "m.pc"
    spec.write_text(SPEC)
    np.save(tmp_path / "x.npy", np.random.default_rng(0).integers(0, 3, (40, 6)))
    base = ["train", str(spec), "--data", str(tmp_path / "x.npy"), "--epochs", "3", "-b", "40", "--samples", "0"]
    r = CliRunner().invoke(app, [*base, "--step-size", "0.5,0.05,0.005", "-o", str(tmp_path / "a.pcz")])
    assert r.exit_code == 0, r.output
    history = pc.io.read(tmp_path / "a.ckpt.pcz")[0]["extra"]["train_state"]["history"]
    np.testing.assert_allclose([h["step_size"] for h in history], [0.5, 0.05, 0.005], rtol=1e-6)  # one step each
    r = CliRunner().invoke(app, [*base, "--step-size", "0.5,x", "-o", str(tmp_path / "b.pcz")])
    assert r.exit_code == 2 and "--step-size expects a finite number >= 0, got 'x'" in r.output, r.output
