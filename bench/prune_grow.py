"""Prune-grow against dense, the paper's main experiment, on the binary DEBD datasets:

(a) the dense HCLT trained with the EM schedule for --dense-epochs (its best epoch by validation LL);
(b) prune-grow started from (a): `pcc train a.pcz --prune-grow ...` (round 0 continues (a) for one
    round), the best round by validation LL;
(c) a dense HCLT with about as many parameters as (b) ends with (a larger latent size), trained
    like (a), its best epoch by validation LL.

    python bench/prune_grow.py --data ../shared/data/twenty_datasets --datasets plants accidents dna \
        --latents 32 --dense-epochs 100 --epochs 30 --rounds 3 --patience 5

Each line of the log is the exact command; results go to WORK/NAME.result.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import pccompile as pc
from pccompile.io import read


def _spec(work: Path, name: str, V: int, latents: int, train: Path) -> Path:
    spec = work / f"{name}_h{latents}.pc"
    spec.write_text(
        f'# HCLT for {name}\nvar x[{V}] : binary\nname = "{name}-hclt{latents}"\n'
        f'root = hclt(x, latents={latents}, data="{train.resolve()}")\n'
    )
    return spec


def _train(spec: Path, sets: tuple, out: Path, args, learner: list[str]) -> float:
    train, valid, test = sets
    cmd = ["pcc", "train", str(spec), "--data", str(train), "--valid", str(valid), "--test", str(test)]
    cmd += ["-b", str(args.batch), "--step-size", str(args.step), "--step-size-end", str(args.step_end)]
    cmd += ["--schedule", args.schedule, "--pseudocount", str(args.pseudocount), "-o", str(out), "--samples", "0"]
    cmd += learner
    print("$ " + shlex.join(cmd), flush=True)
    t0 = time.perf_counter()
    with open(out.with_suffix(".log"), "w") as log:
        subprocess.run([sys.executable, "-m", "pccompile.cli", *cmd[1:]], check=True, stdout=log, stderr=log)
    return time.perf_counter() - t0


def _latents_for(params: int, V: int, train: Path, low: int) -> int:
    """The smallest latent size whose dense HCLT has at least `params` parameters."""

    def count(h: int) -> int:
        src = f'var x[{V}] : binary\nroot = hclt(x, latents={h}, data="{train.resolve()}")\n'
        return pc.compile(src).circuit.stats()["parameters"]

    hi = low
    while count(hi) < params:
        low, hi = hi, hi * 2
    while hi - low > 1:
        mid = (low + hi) // 2
        low, hi = (mid, hi) if count(mid) < params else (low, mid)
    return hi


def _best_epoch(ckpt: Path) -> dict:
    history = read(ckpt)[0]["extra"]["train_state"]["history"]
    best = max(history, key=lambda r: r["valid_ll"])
    return {"epoch": best["epoch"], "valid_ll": best["valid_ll"], "test_ll": best["test_ll"]}


def run(name: str, args) -> dict:
    d = Path(args.data) / name
    sets = tuple(d / f"{name}.{s}.data.gz" for s in ("train", "valid", "test"))
    V = np.loadtxt(sets[2], delimiter=",", max_rows=1).size
    work = Path(args.work)
    dense = work / f"{name}_dense_h{args.latents}.pcz"
    seconds_a = _train(
        _spec(work, name, V, args.latents, sets[0]), sets, dense, args, ["--epochs", str(args.dense_epochs)]
    )
    a = _best_epoch(dense.with_name(dense.stem + ".ckpt.pcz"))
    a["parameters"] = pc.load(dense).circuit.stats()["parameters"]
    pg = f"rounds={args.rounds},fraction={args.fraction},factor=2,noise={args.noise},epochs={args.epochs},"
    pg += f"patience={args.patience}"
    seconds = _train(dense, sets, work / f"{name}_pg.pcz", args, ["--prune-grow", pg])
    rows = json.loads((work / f"{name}_pg.rounds.json").read_text())
    best = max(rows, key=lambda r: r["valid_ll"])
    h = _latents_for(best["parameters"], V, sets[0], args.latents)
    matched = work / f"{name}_dense_h{h}.pcz"
    seconds_c = _train(_spec(work, name, V, h, sets[0]), sets, matched, args, ["--epochs", str(args.dense_epochs)])
    c = _best_epoch(matched.with_name(matched.stem + ".ckpt.pcz"))
    c["parameters"] = pc.load(matched).circuit.stats()["parameters"]
    result = {
        "dataset": name,
        "vars": V,
        "dense": dense,
        "prune_grow": best,
        "rounds": rows,
        "matched_latents": h,
        "matched": c,
        "seconds_pg": seconds,
        "seconds_matched": seconds_c,
    }
    (work / f"{name}.result.json").write_text(json.dumps(result, indent=1))
    print(
        f"{name}: (a) dense h{args.latents} test {a['test_ll']:.3f} ({a['parameters']:,} params, {seconds_a:.0f} s) | "
        f"(b) prune-grow round {best['round']} test {best['test_ll']:.3f} ({best['parameters']:,} params, "
        f"{seconds:.0f} s) | (c) dense h{h} test {c['test_ll']:.3f} ({c['parameters']:,} params, {seconds_c:.0f} s)",
        flush=True,
    )
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/twenty_datasets")
    ap.add_argument("--datasets", nargs="+", default=["plants", "accidents", "dna"])
    ap.add_argument("--work", default="runs/prune_grow")
    ap.add_argument("--latents", type=int, default=32)
    ap.add_argument("--dense-epochs", type=int, default=100, help="of the dense models (a) and (c)")
    ap.add_argument("--epochs", type=int, default=30, help="at most, per prune-grow round (round 0 continues (a))")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--fraction", type=float, default=0.75)
    ap.add_argument("--noise", type=float, default=0.1)
    ap.add_argument("--patience", type=int, default=5)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--step", type=float, default=0.2)
    ap.add_argument("--step-end", type=float, default=0.02)
    ap.add_argument("--schedule", default="linear")
    ap.add_argument("--pseudocount", type=float, default=0.1)
    args = ap.parse_args()
    Path(args.work).mkdir(parents=True, exist_ok=True)
    for name in args.datasets:
        run(name, args)


if __name__ == "__main__":
    main()
