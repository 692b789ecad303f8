"""Data-parallel training (pccompile.learn.distributed): two gloo processes, each reading its
shard of every global batch, train the same parameters as one process on the same data and
batch order, for mini-batch EM, full-batch EM and Adam; the shards cover every batch once."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pccompile.learn.distributed import Group

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from distributed_worker import train  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_ranks(world: int, mode: str, out: Path) -> list[subprocess.Popen]:
    """`world` processes of tests/distributed_worker.py in torchrun's environment."""
    port = _free_port()
    procs = []
    for rank in range(world):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
        env |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, str(HERE / "distributed_worker.py"), mode, str(out)]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    return procs


def _run_ranks(world: int, mode: str, out: Path, timeout: float = 240):
    procs = _start_ranks(world, mode, out)
    outputs = [p.communicate(timeout=timeout)[0] for p in procs]
    for p, text in zip(procs, outputs):
        assert p.returncode == 0, text


@pytest.mark.parametrize("n,world", [(64, 2), (65, 2), (7, 3), (2, 3)])
def test_shards_cover_every_row_once(n, world):
    rows = np.concatenate([np.arange(n)[Group(r, world).shard(n)] for r in range(world)])
    np.testing.assert_array_equal(rows, np.arange(n))


@pytest.mark.parametrize("optimizer", ["em", "em-full", "adam"])
def test_two_processes_train_what_one_does(optimizer, tmp_path):
    out = tmp_path / "ranks.npz"
    _run_ranks(2, optimizer, out)
    got = np.load(out)
    model, history = train(optimizer)
    for k, v in model.state_dict().items():
        np.testing.assert_allclose(got[k], v.detach().numpy(), rtol=1e-9, atol=1e-10, err_msg=k)
    np.testing.assert_allclose(got["train_ll"], [r.train_ll for r in history], rtol=1e-10)
    np.testing.assert_allclose(got["valid_ll"], [r.valid_ll for r in history], rtol=1e-10)
    assert not torch.equal(model.sum_logits, torch.zeros_like(model.sum_logits))


def test_two_processes_prune_and_grow_what_one_does(tmp_path):
    """The pruned edges come from flows all-reduced over the ranks: the same circuit on every
    rank and in one process, trained to the same log-likelihoods, and the same best model (every
    rank loads it from the file rank 0 wrote)."""
    from distributed_worker import prune_grow_round

    out = tmp_path / "ranks.npz"
    _run_ranks(2, "prune-grow", out)
    got = np.load(out)
    model, rows = prune_grow_round(tmp_path / "single")
    assert len(rows) == 2 and rows[1]["edges"] != rows[0]["edges"]  # round 1 was pruned and grown
    np.testing.assert_array_equal(got["edges"], [r["edges"] for r in rows])
    np.testing.assert_allclose(got["round_valid_ll"], [r["valid_ll"] for r in rows], rtol=1e-10)  # each round's
    rank1 = np.load(tmp_path / "rank1.npz")
    for k in got.files:
        np.testing.assert_array_equal(rank1[k], got[k], err_msg=k)  # rank 1 read back rank 0's best
    for k, v in model.state_dict().items():
        np.testing.assert_allclose(got[k], v.detach().numpy(), rtol=1e-9, atol=1e-10, err_msg=k)


@pytest.mark.parametrize("encoder", ["patches", "mae"])
def test_two_processes_distill_what_one_does(encoder, tmp_path, monkeypatch):
    """LVD: rank 0 trains the MAE and shares it, k-means is split by latent and the centres
    shared, the counts all-reduced: the parameters one process sets."""
    from distributed_worker import SPEC, lvd

    import pccompile as pc

    monkeypatch.setenv("PCC_CACHE", str(tmp_path / "cache"))  # the single run loads rank 0's MAE
    out = tmp_path / "ranks.npz"
    _run_ranks(2, f"lvd-{encoder}", out)
    got = np.load(out)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the ranks run: the same float rounding in the embeddings
    try:
        model, report = lvd(encoder)
    finally:
        torch.set_num_threads(threads)
    assert encoder != "mae" or not report.encoder.trained
    start = pc.compile(SPEC, seed=5, dtype=torch.float64).state_dict()
    assert not all(torch.equal(v, start[k]) for k, v in model.state_dict().items())  # LVD set them
    for k, v in model.state_dict().items():
        np.testing.assert_allclose(got[k], v.detach().numpy(), rtol=1e-9, atol=1e-12, err_msg=k)


def test_ranks_waiting_for_the_mae_hear_rank_0_live_past_their_timeout(tmp_path, monkeypatch):
    """Rank 0 trains the MAE for several seconds while rank 1 waits with a 3 s timeout: its
    heartbeat keeps rank 1 from taking it for a hang."""
    monkeypatch.setenv("PCC_CACHE", str(tmp_path / "cache"))
    t0 = time.perf_counter()
    _run_ranks(2, "lvd-mae-slow", tmp_path / "ranks.npz")
    assert time.perf_counter() - t0 > 6  # the training did outlast the timeout, twice over


def test_a_rank_0_that_hangs_in_the_mae_training_times_the_others_out(tmp_path, monkeypatch):
    monkeypatch.setenv("PCC_CACHE", str(tmp_path / "cache"))
    main, other = _start_ranks(2, "lvd-mae-hang", tmp_path / "ranks.npz")
    try:
        text = other.communicate(timeout=40)[0]  # rank 0 sleeps 60 s: rank 1 gives up long before
    finally:
        main.kill()
        main.communicate()
    assert other.returncode != 0 and "DistributedError: rank 1 of 2" in text, text


def test_ranks_that_fall_out_of_step_are_named_after_the_epoch_they_did(tmp_path):
    procs = _start_ranks(2, "desync", tmp_path / "ranks.npz")
    texts = [p.communicate(timeout=120)[0] for p in procs]
    for p, text in zip(procs, texts):
        assert p.returncode != 0 and "after epoch 1, rank(s) 1 hold other parameters than rank 0" in text, text


def _pcc_train(tmp_path, out: str, epochs: int, world: int = 0, resume: bool = False, learner=("--patience", "5")):
    """`pcc train` on the digits, under torchrun with `world` processes (0: a plain process);
    `learner`: by default the best epoch is kept (rank 0 writes it)."""
    args = ["train", str(HERE.parent / "examples/digits.pc"), "--data", "builtin:digits", "-b", "128"]
    args += ["--valid", "builtin:digits:valid", *learner]
    args += ["--epochs", str(epochs), "-o", str(tmp_path / out), "--samples", "0", "--seed", "3"]
    args += ["--resume"] if resume else []
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if world:
        launch = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(world)]
        launch += ["--master-port", str(_free_port()), "-m", "pccompile.cli"]
        cmd = launch + args + ["--distributed"]
    else:
        cmd = [sys.executable, "-m", "pccompile.cli", *args]
    r = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def _params(path):
    import pccompile as pc

    return {k: v.detach().numpy() for k, v in pc.load(path).state_dict().items()}


def test_pcc_train_distributed_gives_the_single_process_model_and_resumes_on_other_counts(tmp_path):
    out = _pcc_train(tmp_path, "two.pcz", 2, world=2)
    assert out.count("epoch    train LL") == 1  # only rank 0 prints
    _pcc_train(tmp_path, "one.pcz", 2)
    one, two = _params(tmp_path / "one.pcz"), _params(tmp_path / "two.pcz")
    for k in one:
        np.testing.assert_allclose(two[k], one[k], rtol=2e-4, atol=2e-5, err_msg=k)  # float32 sums in another order
    _pcc_train(tmp_path, "mixed.pcz", 1, world=2)  # one epoch on two processes,
    _pcc_train(tmp_path, "mixed.pcz", 2, resume=True)  # the second on one
    mixed = _params(tmp_path / "mixed.pcz")
    for k in one:
        np.testing.assert_allclose(mixed[k], one[k], rtol=2e-4, atol=2e-5, err_msg=k)
    _pcc_train(tmp_path, "back.pcz", 1)  # and the other way round
    _pcc_train(tmp_path, "back.pcz", 2, world=2, resume=True)
    back = _params(tmp_path / "back.pcz")
    for k in one:
        np.testing.assert_allclose(back[k], one[k], rtol=2e-4, atol=2e-5, err_msg=k)


@pytest.mark.parametrize(
    "learner", [("--prune-grow", "rounds=1,epochs=1,fraction=0.5"), ("--compress", "rounds=2,epochs=1,fraction=0.3")]
)
def test_pcc_train_distributed_rounds_give_the_single_process_rounds(learner, tmp_path):
    import json

    out = _pcc_train(tmp_path, "two.pcz", 1, world=2, learner=learner)
    assert out.count("prune-grow rounds") == 1  # rank 0 alone prints the table
    _pcc_train(tmp_path, "one.pcz", 1, learner=learner)
    one = json.loads((tmp_path / "one.rounds.json").read_text())
    two = json.loads((tmp_path / "two.rounds.json").read_text())
    assert [r["edges"] for r in two] == [r["edges"] for r in one] and one[1]["edges"] != one[0]["edges"]
    for a, b in zip(one, two):
        for key in ("train_ll", "valid_ll"):
            np.testing.assert_allclose(b[key], a[key], rtol=1e-4, err_msg=key)  # float32 sums in another order
    assert {k: v.shape for k, v in _params(tmp_path / "two.pcz").items()} == {
        k: v.shape for k, v in _params(tmp_path / "one.pcz").items()
    }


def test_a_prune_grow_run_killed_on_two_processes_resumes_on_one_to_the_same_rounds(tmp_path):
    """Rank 1 dies in round 1 (after epoch 3 of 4); one process resumes from rank 0's checkpoint
    and round file and ends on the rounds of an uninterrupted run."""
    import json

    learner = ("--prune-grow", "rounds=1,epochs=2,fraction=0.5")
    r, _ = _faulty(tmp_path, 1, 3, 30, ("--valid", "builtin:digits:valid", "--seed", "3", *learner), out="cut.pcz")
    assert r.returncode != 0 and (tmp_path / "cut.ckpt.pcz").exists(), r.stdout + r.stderr
    out = _pcc_train(tmp_path, "cut.pcz", 1, resume=True, learner=learner)
    assert "resuming from" in out and out.count("(checkpoint)") >= 2  # in round 1: the pruning was done on 2
    _pcc_train(tmp_path, "whole.pcz", 1, learner=learner)
    cut = json.loads((tmp_path / "cut.rounds.json").read_text())
    whole = json.loads((tmp_path / "whole.rounds.json").read_text())
    assert [r["edges"] for r in cut] == [r["edges"] for r in whole] and len(whole) == 2
    for a, b in zip(whole, cut):
        for key in ("train_ll", "valid_ll", "best_epoch"):
            np.testing.assert_allclose(b[key], a[key], rtol=1e-4, err_msg=key)  # float32 sums in another order


def test_pcc_train_distributed_lvd_gives_the_single_process_model(tmp_path, monkeypatch):
    monkeypatch.setenv("PCC_CACHE", str(tmp_path / "cache"))
    learner = ("--lvd", "encoder=mae,steps=20,dim=8")
    out = _pcc_train(tmp_path, "two.pcz", 1, world=2, learner=learner)
    assert out.count("LVD: encoder mae (trained, cached at") == 1  # rank 0 trains, and speaks
    assert len(list((tmp_path / "cache").iterdir())) == 1  # one cache entry, no rank's temporary left
    out = _pcc_train(tmp_path, "one.pcz", 1, learner=learner)
    assert "LVD: encoder mae (loaded from" in out
    one, two = _params(tmp_path / "one.pcz"), _params(tmp_path / "two.pcz")
    for k in one:
        np.testing.assert_allclose(two[k], one[k], rtol=2e-4, atol=2e-5, err_msg=k)  # float32 sums in another order


def test_each_rank_steps_on_its_shard_only():
    """With the all-reduce stubbed out, rank 1 of 2 sees the second half of every global batch
    of the single-process order (so the two-process tests above could not pass by every rank
    reading whole batches)."""
    import pccompile as pc
    from pccompile.datasets import load_builtin
    from pccompile.learn import TrainConfig, Trainer

    class Alone(Group):
        def sum_(self, tensors):  # one process: nothing to add
            return None

        def check_in_sync(self, tensors, when):  # the stubbed sums put rank 1 out of step on purpose
            return None

        def check_same_data(self, splits, model=None, settings=None):  # one process: no one to compare with
            return None

    x = load_builtin("builtin:digits")[:150]
    model = pc.compile('var a[64] : categorical(17)\nroot = hclt(a, latents=2, data="builtin:digits")\n')
    seen = []
    trainer = Trainer(model, TrainConfig(epochs=1, batch_size=64, seed=4), x, group=Alone(1, 2))
    step = trainer.strategy.step
    trainer.strategy.step = lambda xi, xr, a: seen.append(xi.clone()) or step(xi, xr, a)
    trainer.run()
    perm = np.random.default_rng([4, 0]).permutation(150)
    want = [perm[a : min(a + 64, 150)] for a in range(0, 150, 64)]
    want = [w[len(w) - len(w) // 2 :] for w in want]
    assert [len(s) for s in seen] == [len(w) for w in want]
    for s, w in zip(seen, want):
        np.testing.assert_array_equal(s.numpy(), model.encode(x[w])[0].numpy())


def _faulty(tmp_path, rank: int, epoch: int, timeout_s: int, learner=("--epochs", "4"), out="m.pcz"):
    """Two ranks of `pcc train --distributed` where `rank` dies after `epoch` (or hangs: -epoch)."""
    args = ["train", str(HERE.parent / "examples/digits.pc"), "--data", "builtin:digits", "-b", "128"]
    args += [*learner, "-o", str(tmp_path / out), "--samples", "0", "--distributed"]
    launch = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        str(_free_port()),
    ]
    cmd = [*launch, str(HERE / "die_on_rank.py"), str(rank), str(epoch), *args]
    env = dict(os.environ, OMP_NUM_THREADS="1", PCC_DIST_TIMEOUT=str(timeout_s))
    t0 = time.monotonic()
    r = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    return r, time.monotonic() - t0


def test_a_killed_rank_stops_the_others_with_its_rank_named(tmp_path):
    r, seconds = _faulty(tmp_path, 1, 1, 30)
    assert r.returncode != 0 and seconds < 60
    text = r.stdout + r.stderr
    assert "rank      : 1" in text and "exitcode  : 75" in text  # torchrun names the rank that died


def test_a_hung_rank_times_the_others_out_and_the_run_resumes(tmp_path):
    r, seconds = _faulty(tmp_path, 1, -1, 6)
    assert r.returncode != 0 and seconds < 60
    text = r.stdout + r.stderr
    assert "rank 0 of 2: the other ranks did not all answer within 6 s" in text and "--resume" in text
    assert "[rank0]: RuntimeError" not in text and "[rank0]: ╭" not in text  # our message, not a traceback
    out = _pcc_train(tmp_path, "m.pcz", 4, resume=True)  # one process takes over from epoch 1
    assert "resuming from" in out and "(checkpoint)" in out
    assert (tmp_path / "m.pcz").exists()


def test_distributed_outside_torchrun_is_refused(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from pccompile.cli import app

    for var in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    args = ["train", str(HERE.parent / "examples/digits.pc"), "--data", "builtin:digits", "--distributed"]
    args += ["-o", str(tmp_path / "m.pcz")]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2 and "--distributed runs under torchrun" in r.output


def test_prune_grow_on_several_ranks_needs_a_shared_out():
    from distributed_worker import SPEC
    from pccompile.ir import ArgumentError

    import pccompile as pc
    from pccompile.learn import prune_grow

    model = pc.compile(SPEC)
    with pytest.raises(ArgumentError, match="prune_grow with a group needs out=: a path every rank can read"):
        prune_grow(model, np.zeros((8, 64), np.int64), group=Group(0, 2))


def _rank_args(tmp_path, args: list[str], timeout_s: int = 30):
    """Two ranks of `pcc ARGS --distributed` under torchrun, '{rank}' in ARGS replaced by each
    rank's number (tests/rank_args.py): (result, seconds)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(_free_port())]
    cmd += [str(HERE / "rank_args.py"), *args, "--distributed"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PCC_DIST_TIMEOUT=str(timeout_s))
    t0 = time.monotonic()
    r = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    return r, time.monotonic() - t0


@pytest.mark.parametrize(
    "split,edit,said",
    [
        ("train", "value", "rank 1's training data hold other values than rank 0's (300 rows each)"),
        ("train", "rows", "rank 1 has 250 training rows of 64 values, rank 0 300 of 64"),
        ("valid", "value", "rank 1's validation data hold other values than rank 0's (300 rows each)"),
    ],
)
def test_ranks_that_read_other_data_are_refused_before_the_first_step(tmp_path, split, edit, said):
    """Each rank reads its own file ('x{rank}.npy'), of one shape with one value changed or of
    fewer rows: both ranks stop at once with the same one-line error naming rank 1 and what
    differs, and nothing is written (unequal rows used to abort inside gloo; a changed value
    trained silently wrong)."""
    from pccompile.datasets import load_builtin

    x = load_builtin("builtin:digits")[:300]
    other = x[:250] if edit == "rows" else x.copy()
    if edit == "value":
        other[5, 5] = (other[5, 5] + 1) % 17
    np.save(tmp_path / "x0.npy", x)
    np.save(tmp_path / "x1.npy", other)
    np.save(tmp_path / "same.npy", x)
    files = {"train": "same.npy", "valid": "same.npy", split: "x{rank}.npy"}
    args = ["train", str(HERE.parent / "examples/digits.pc"), "--data", files["train"], "--valid", files["valid"]]
    args += ["--epochs", "2", "-b", "64", "--samples", "0", "-o", str(tmp_path / "out" / "m.pcz")]
    r, seconds = _rank_args(tmp_path, args)
    text = r.stdout + r.stderr
    assert r.returncode != 0 and seconds < 30, text
    for rank in (0, 1):
        assert f"error: rank {rank} of 2: the ranks disagree before training: {said}" in text, text
    assert "[rank0]: Traceback" not in text and "[rank1]: Traceback" not in text
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_ranks_with_other_settings_are_refused(tmp_path):
    args = ["train", str(HERE.parent / "examples/digits.pc"), "--data", "builtin:digits", "--seed", "{rank}"]
    args += ["--epochs", "1", "--samples", "0", "-o", str(tmp_path / "m.pcz")]
    r, seconds = _rank_args(tmp_path, args)
    text = r.stdout + r.stderr
    assert r.returncode != 0 and seconds < 30, text
    assert "rank 1 runs with other training settings than rank 0" in text, text


@pytest.mark.parametrize("value", ["abc", "-1", "1e400", "0", "nan"])
def test_a_bad_timeout_is_one_line_naming_the_variable(tmp_path, monkeypatch, value):
    from typer.testing import CliRunner

    from pccompile.cli import app

    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("PCC_DIST_TIMEOUT", value)
    args = ["train", str(HERE.parent / "examples/digits.pc"), "--data", "builtin:digits", "--distributed"]
    r = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "m.pcz")])
    want = f"error: environment variable PCC_DIST_TIMEOUT expects a finite number in [1, 604,800], got '{value}'"
    assert r.exit_code == 2 and r.output.strip() == want, r.output


def test_the_fingerprints_name_every_kind_of_disagreement():
    """What each rank holds differently from rank 0, in words, from the gathered fingerprints
    (two ranks simulated here; the runs above go through gloo)."""
    from pccompile.learn.distributed import _disagreements, _fingerprints, _split_numbers

    x = np.arange(60).reshape(20, 3)

    def said(**rank1):
        base = {"splits": {"train": x, "valid": x[:5]}, "settings": {"seed": 0}}
        mine = {**base, **rank1}
        f0 = _fingerprints(base["splits"], None, base["settings"], lambda x: _split_numbers(x, 2))
        f1 = _fingerprints(mine["splits"], None, mine["settings"], lambda x: _split_numbers(x, 2))
        return _disagreements(f0, [[v for f in f0 for v in f[1]], [v for f in f1 for v in f[1]]])

    assert said() == []
    assert said(splits={"train": x[:18], "valid": x[:5]}) == ["rank 1 has 18 training rows of 3 values, rank 0 20 of 3"]
    assert said(splits={"train": x.astype(np.int32), "valid": x[:5]}) == [
        "rank 1's training data are of another element type than rank 0's"
    ]
    other = x.copy()
    other[19, 2] += 1
    assert said(splits={"train": other, "valid": x[:5]}) == [
        "rank 1's training data hold other values than rank 0's (20 rows each)"
    ]
    assert said(splits={"train": x, "valid": None}) == ["rank 1 has no validation data, rank 0 has"]
    assert said(settings={"seed": 1}) == ["rank 1 runs with other training settings than rank 0"]
    import pccompile as pc

    two = [pc.compile(f"var x[3] : binary\nroot = hmm(x, latents={k})\n") for k in (2, 3)]
    f0, f1 = (_fingerprints({}, m, None, lambda x: _split_numbers(x, 2)) for m in two)
    assert _disagreements(f0, [[v for f in f0 for v in f[1]], [v for f in f1 for v in f[1]]]) == [
        "rank 1 compiled another circuit than rank 0 (other tensors or variable types)"
    ]


def test_a_split_is_hashed_once_however_often_it_is_checked(monkeypatch):
    """The CLI, LVD and the trainer each check the same training array: one hash pass, kept
    with the array (so its id cannot be reused by another)."""
    import pccompile.learn.distributed as d

    calls = []
    real = d._split_numbers
    monkeypatch.setattr(d, "_split_numbers", lambda x, world: calls.append(1) or real(x, world))
    group, x = Group(0, 2), np.arange(12).reshape(4, 3)
    assert group._split_fact(x) == group._split_fact(x) == real(x, 2)
    assert len(calls) == 1 and group._split_fact(x.copy()) == real(x, 2) and len(calls) == 2
