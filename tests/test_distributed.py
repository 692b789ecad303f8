"""Data-parallel training (pccompile.learn.distributed): two gloo processes, each reading its
shard of every global batch, train the same parameters as one process on the same data and
batch order, for mini-batch EM, full-batch EM and Adam; the shards cover every batch once."""

import os
import socket
import subprocess
import sys
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


def _run_ranks(world: int, optimizer: str, out: Path, timeout: float = 240):
    port = _free_port()
    procs = []
    for rank in range(world):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
        env |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, str(HERE / "distributed_worker.py"), optimizer, str(out)]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
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
