"""What the image and text benchmarks share: run `pcc train` with the released EM recipe, read the
best epoch back from the checkpoint, and keep a results row with its command and commit."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from pccompile.io import read


def data_flags(work: Path) -> list[str]:
    """--data, --valid and --test at work/{train,valid,test}.npy."""
    return ["--data", str(work / "train.npy"), "--valid", str(work / "valid.npy"), "--test", str(work / "test.npy")]


def train_command(spec: Path, work: Path, out: Path, epochs: int, batch: int, knots: str | None, pseudocount: str):
    """`pcc train` on work/{train,valid,test}.npy: the knots schedule with the last partial batch
    dropped (the released recipe), or a constant step of 0.1 without knots."""
    return [
        "pcc", "train", str(spec), *data_flags(work),
        "--epochs", str(epochs), "-b", str(batch),
        *(["--step-size", knots, "--drop-last"] if knots else ["--step-size", "0.1"]),
        "--pseudocount", pseudocount, "-o", str(out),
    ]  # fmt: skip


def run(cmd: list[str]) -> float:
    """Run a `pcc` command with this interpreter's pcc, printing it first; returns its seconds."""
    print(shlex.join(cmd), flush=True)
    t0 = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "pcc"), *cmd[1:]], check=True)
    return time.perf_counter() - t0


def best_epoch(checkpoint: Path) -> dict:
    """The history row of the best validation LL in a `pcc train` checkpoint."""
    hist = read(checkpoint)[0]["extra"]["train_state"]["history"]
    return max(hist, key=lambda r: r["valid_ll"])


def parameters(model_path: Path) -> int:
    """The parameter count of a saved model, as `pcc train` prints it."""
    from pccompile.io import load

    return int(load(model_path, backend="torch").circuit.stats()["parameters"])


def commit() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()


def keep(row: dict, path: str | None) -> None:
    """Print a results row and append it to `path` (a .jsonl) when given."""
    print(json.dumps(row), flush=True)
    if path:
        with open(path, "a") as fh:
            fh.write(json.dumps(row) + "\n")
