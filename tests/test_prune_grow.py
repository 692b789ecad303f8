"""The prune-grow learner from the command line: rounds, the best model, files, exact resume."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pccompile as pc
from pccompile.io import read
from pccompile.learn import PruneGrowOptions

SPEC = 'var px[64] : categorical(17)\nroot = hclt(px, latents=4, data="builtin:digits", max_rows=400)\n'


PRUNE_GROW = [
    "--prune-grow",
    "rounds=2,fraction=0.5,factor=2,noise=0.1,epochs=3,patience=1",
    "--step-size",
    "0.3",
    "--step-size-end",
    "0.05",
    "--schedule",
    "linear",
]


def _cmd(tmp_path, out, extra=(), learner=PRUNE_GROW):
    """`pcc train` on the digits with a rounds learner (default: prune-grow with its schedule)."""
    return [
        "train",
        str(tmp_path / "s.pc"),
        "--data",
        "builtin:digits",
        "--valid",
        "builtin:digits:valid",
        *learner,
        "-b",
        "128",
        "-o",
        str(out),
        "--samples",
        "0",
        *extra,
    ]


def test_prune_grow_rounds_are_reported_and_the_best_model_is_saved(tmp_path):
    (tmp_path / "s.pc").write_text(SPEC)
    r = subprocess.run(
        [sys.executable, "-m", "pccompile.cli", *_cmd(tmp_path, tmp_path / "m.pcz")], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stdout + r.stderr
    rows = json.loads((tmp_path / "m.rounds.json").read_text())
    assert [row["round"] for row in rows] == [0, 1, 2]
    # pruning trims rows nothing reads, then growing doubles every vector but the single root
    assert rows[1]["nodes"] <= 2 * rows[0]["nodes"] - 1 and rows[1]["nodes"] % 2 == 1
    best = max(rows, key=lambda row: row["valid_ll"])
    model = pc.load(tmp_path / "m.pcz")
    x = pc.datasets.load_builtin("builtin:digits:valid")
    assert float(model(x).detach().mean()) == pytest.approx(best["valid_ll"], abs=1e-3)
    assert model.circuit.stats()["nodes"] == best["nodes"]
    assert (tmp_path / "m_rounds.png").stat().st_size > 1000 and "prune-grow rounds" in r.stdout


def test_prune_grow_killed_mid_round_and_resumed_equals_uninterrupted(tmp_path):
    (tmp_path / "s.pc").write_text(SPEC)
    full = subprocess.run(
        [sys.executable, "-m", "pccompile.cli", *_cmd(tmp_path, tmp_path / "a.pcz")], capture_output=True, text=True
    )
    assert full.returncode == 0, full.stdout + full.stderr
    crash = [sys.executable, str(Path(__file__).parent / "crash_after_epoch.py"), "5"]  # inside round 1
    crashed = subprocess.run(crash + _cmd(tmp_path, tmp_path / "b.pcz"), capture_output=True, text=True)
    assert crashed.returncode == 75, crashed.stdout + crashed.stderr
    ended = json.loads((tmp_path / "b.rounds.json").read_text())
    assert ended[-1]["epoch"] < 5 and (tmp_path / "b.round.pcz").exists()  # killed inside a round
    resumed = subprocess.run(
        [sys.executable, "-m", "pccompile.cli", *_cmd(tmp_path, tmp_path / "b.pcz", ["--resume"])],
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    _, a = read(tmp_path / "a.pcz")
    _, b = read(tmp_path / "b.pcz")
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert (
        json.loads((tmp_path / "a.rounds.json").read_text())[-1]["valid_ll"]
        == json.loads((tmp_path / "b.rounds.json").read_text())[-1]["valid_ll"]
    )


@pytest.mark.parametrize(
    "text,match",
    [
        ("rounds=x", "--prune-grow: option 'rounds' expects an integer in 0..10,000, got 'x'"),
        ("rounds=9223372036854775808", "option 'rounds' expects an integer in 0..10,000"),
        ("colour=1", "--prune-grow has no option 'colour'; options: rounds, fraction"),
        ("fraction=2", r"option 'fraction' expects a finite number in \[0, 1\], got '2'"),
        ("noise=inf", r"option 'noise' expects a finite number >= 0, got 'inf'"),
        ("rounds=1,rounds=2", "option 'rounds' is given twice"),
    ],
)
def test_prune_grow_settings_are_checked(text, match):
    with pytest.raises(pc.ArgumentError, match=match):
        PruneGrowOptions.parse(text)


def test_compression_stops_at_the_tolerance_and_keeps_the_smallest_model_within_it(tmp_path):
    (tmp_path / "s.pc").write_text(SPEC)
    cmd = _cmd(tmp_path, tmp_path / "c.pcz", learner=["--compress", "fraction=0.6,tolerance=0,epochs=1,rounds=4"])
    r = subprocess.run([sys.executable, "-m", "pccompile.cli", *cmd], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = json.loads((tmp_path / "c.rounds.json").read_text())
    start = rows[0]["valid_ll"]
    within = [row for row in rows if row["valid_ll"] >= start]
    assert pc.load(tmp_path / "c.pcz").circuit.stats()["sum edges"] == within[-1]["edges"]
    assert rows[1]["edges"] < rows[0]["edges"]  # rounds prune (down to one edge per row at most)
    assert all(a["edges"] >= b["edges"] for a, b in zip(rows, rows[1:]))
    if len(rows) < 5:  # stopped early: the last round fell below the start, and a resume trains nothing more
        assert rows[-1]["valid_ll"] < start
        again = subprocess.run(
            [sys.executable, "-m", "pccompile.cli", *cmd, "--resume"], capture_output=True, text=True
        )
        assert again.returncode == 0 and len(json.loads((tmp_path / "c.rounds.json").read_text())) == len(rows)


def test_the_two_learners_exclude_each_other_and_compression_settings_are_checked(tmp_path):
    from pccompile.learn import CompressOptions

    (tmp_path / "s.pc").write_text(SPEC)
    from typer.testing import CliRunner

    from pccompile.cli import app

    r = CliRunner().invoke(app, _cmd(tmp_path, tmp_path / "m.pcz", ["--compress", "fraction=0.1"]))
    assert r.exit_code == 2 and "--prune-grow and --compress are two learners; choose one" in r.output, r.output
    with pytest.raises(
        pc.ArgumentError, match=r"--compress: option 'fraction' expects a finite number in \(0, 1\], got '0'"
    ):
        CompressOptions.parse("fraction=0")
    with pytest.raises(
        pc.ArgumentError, match=r"--compress: option 'tolerance' expects a finite number >= 0, got 'nan'"
    ):
        CompressOptions.parse("tolerance=nan")


def test_the_python_learner_keeps_each_rounds_best_epoch_and_stops_a_stalled_round(tmp_path):
    from pccompile.learn import TrainConfig, prune_grow

    x = pc.datasets.load_builtin("builtin:digits")[:300]
    v = pc.datasets.load_builtin("builtin:digits:valid")
    options = PruneGrowOptions(rounds=2, fraction=0.5, epochs=4, patience=1)
    config = TrainConfig(batch_size=100, step_size=0.9, schedule="constant")  # large steps: rounds stall
    start = pc.compile(SPEC)
    start_ll = float(start(v).detach().mean())
    best, rows = prune_grow(start, x, v, options=options, config=config, out=tmp_path / "m.pcz")
    assert rows[0]["valid_ll"] >= start_ll - 1e-6  # the model given is epoch 0 of round 0
    history = read(tmp_path / "m.ckpt.pcz")[0]["extra"]["train_state"]["history"]
    assert [r["round"] for r in rows] == [0, 1, 2] and len(history) == rows[-1]["epoch"]
    start = 0
    for row in rows:
        epochs = history[start : row["epoch"]]
        assert 1 <= len(epochs) <= options.epochs
        assert row["valid_ll"] >= max(e["valid_ll"] for e in epochs) - 1e-9
        if row["best_epoch"] > 0:  # a trained epoch: its own record
            assert row["valid_ll"] == epochs[row["best_epoch"] - 1]["valid_ll"]
        if len(epochs) < options.epochs:  # ended early: `patience` epochs after its best
            assert len(epochs) - row["best_epoch"] == options.patience
        start = row["epoch"]
    assert any(len(history[a["epoch"] : b["epoch"]]) < options.epochs for a, b in zip(rows, rows[1:]))
    assert float(best(v).detach().mean()) == pytest.approx(max(r["valid_ll"] for r in rows), abs=1e-3)


DIGITS_PRUNE_GROW = "rounds=2,fraction=0.75,factor=2,noise=0.1,epochs=40,patience=5,warmup=10"


@pytest.mark.slow
def test_prune_grow_on_the_digits_beats_the_dense_model_it_started_from(tmp_path):
    """The README's prune-grow command: the best round beats round 0 (the dense HCLT of
    examples/digits.pc trained 40 epochs) on validation and on test data. With the warm-up the
    grown rounds train through the dip after growing: the measured margins are 0.98 nats on
    validation and 0.73 on test (-88.08 against -88.81); the test asks 0.5 and 0.25."""
    spec = Path(__file__).parent.parent / "examples" / "digits.pc"
    cmd = ["train", str(spec), "--data", "builtin:digits", "--valid", "builtin:digits:valid"]
    cmd += ["--test", "builtin:digits:test", "--prune-grow", DIGITS_PRUNE_GROW, "--step-size", "0.2"]
    cmd += ["--step-size-end", "0.02", "--schedule", "linear", "-b", "64", "-o", str(tmp_path / "d.pcz")]
    r = subprocess.run([sys.executable, "-m", "pccompile.cli", *cmd, "--samples", "0"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = json.loads((tmp_path / "d.rounds.json").read_text())
    dense, best = rows[0], max(rows, key=lambda row: row["valid_ll"])
    assert best["round"] > 0 and best["valid_ll"] > dense["valid_ll"] + 0.5, rows
    assert best["test_ll"] > dense["test_ll"] + 0.25, rows


def test_the_result_table_reports_the_saved_round_not_the_last_epoch(tmp_path):
    (tmp_path / "s.pc").write_text(SPEC)
    r = subprocess.run(
        [sys.executable, "-m", "pccompile.cli", *_cmd(tmp_path, tmp_path / "m.pcz", ["--test", "builtin:digits:test"])],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert r.returncode == 0, r.stdout + r.stderr
    rows = json.loads((tmp_path / "m.rounds.json").read_text())
    best = max(rows, key=lambda row: row["valid_ll"])
    result = r.stdout[r.stdout.index("saved model: round") :]
    assert f"round {best['round']} (best valid LL)" in result.splitlines()[0]
    test_line = next(line for line in result.splitlines() if " test " in line)
    assert f"{best['test_ll']:.4f}" in test_line


class _Scripted:
    """What the prune-grow hook reads of a trainer, with validation LLs given by the test."""

    def __init__(self, model):
        from pccompile.learn.trainer import EpochRecord

        self.model, self.history, self.valid, self.test, self.stopped = model, [], None, None, False
        self.record = lambda epoch, ll: EpochRecord(epoch, ll, ll, None, 0.0, 0.1)


@pytest.mark.parametrize(
    "warmup,patience,best,ended",
    [(0, 2, 0, 2), (3, 2, 5, 6), (3, 0, 5, 6), (6, 0, 6, 6)],
)
def test_a_warm_up_keeps_the_epoch_after_the_dip(tmp_path, warmup, patience, best, ended):
    """Validation LL dips for three epochs after the round's start (the shape seen after
    growing) and passes it at epoch 5. Without a warm-up, patience 2 ends the round at epoch 2
    on its untrained epoch 0; with a warm-up of 3 the round runs on and keeps epoch 5. A warm-up
    as long as the round still keeps its last epoch."""
    from pccompile.learn.rounds import PruneGrow

    model = pc.compile(SPEC)
    options = PruneGrowOptions(rounds=0, epochs=6, patience=patience, warmup=warmup)
    hook = PruneGrow(options, None, tmp_path / "m.pcz")
    trainer = _Scripted(model)
    hook._offer_untrained(model, {"epoch": 0, "train_ll": -90.7, "valid_ll": -90.7, "test_ll": None})
    for epoch, ll in enumerate([-91.0, -91.1, -91.2, -90.9, -90.5, -90.6], start=1):
        rec = trainer.record(epoch, ll)
        trainer.history.append(rec)
        hook(trainer, rec)
        if hook.rows:
            break
    assert hook.rows[0]["epoch"] == ended and hook.rows[0]["best_epoch"] == best
    assert hook.rows[0]["untrained_valid_ll"] == -90.7 and trainer.stopped


def test_round_patience_ends_the_loop_after_rounds_without_a_new_best(tmp_path):
    from pccompile.learn.rounds import PruneGrow

    hook = PruneGrow(PruneGrowOptions(rounds=20, round_patience=2), None, tmp_path / "m.pcz")
    for lls in ([-3.0], [-3.0, -2.0], [-3.0, -2.0, -2.5], [-3.0, -2.0, -2.5, -2.1]):
        hook.rows = [{"round": k, "valid_ll": v} for k, v in enumerate(lls)]
        assert hook._out_of_patience() == (len(lls) == 4)


def test_the_paper_preset_is_the_released_schedule_and_explicit_settings_win():
    opt = PruneGrowOptions.parse("preset=paper,epochs=30")
    assert (opt.rounds, opt.epochs, opt.noise, opt.growth, opt.warmup, opt.round_patience) == (
        20,
        30,
        0.3,
        "released",
        50,
        2,
    )
    assert opt == PruneGrowOptions.from_preset("paper", epochs=30)
    assert opt.train_defaults() == {
        "batch_size": 512,
        "pseudocount": 0.01,
        "step_knots": (0.3, 0.1, 0.01, 0.001),
        "drop_last": True,
    }
    assert PruneGrowOptions.parse("epochs=30").train_defaults() == {}


def test_the_pseudocount_follows_growth_when_asked(tmp_path):
    """pseudocount_growth: each round trains with the run's pseudocount over factor^round (the
    strategy the trainer builds for the round's model holds it); without it every round keeps it."""
    from pccompile.learn import TrainConfig, prune_grow
    from pccompile.learn.strategies import MiniBatchEM

    seen = []
    step = MiniBatchEM.step

    def spy(self, x_int, x_real, step_size):
        seen.append(self.pseudocount)
        return step(self, x_int, x_real, step_size)

    x = np.random.default_rng(0).integers(0, 17, (120, 64))
    for grow in (True, False):
        seen.clear()
        MiniBatchEM.step = spy
        try:
            opts = PruneGrowOptions(rounds=2, epochs=1, fraction=0.5, pseudocount_growth=grow)
            prune_grow(pc.compile(SPEC), x, x[:40], options=opts, config=TrainConfig(batch_size=120, pseudocount=0.4))
        finally:
            MiniBatchEM.step = step
        want = [0.4, 0.2, 0.1] if grow else [0.4, 0.4, 0.4]
        assert seen == pytest.approx(want), seen
