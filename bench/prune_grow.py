"""Prune-grow against dense, the paper's main experiment, on the binary DEBD datasets:

(a) the dense HCLT trained with the EM schedule for --dense-epochs (its best epoch by validation LL);
(b) prune-grow started from (a): `pcc train a.pcz --prune-grow ...` (round 0 continues (a) for one
    round), the best round by validation LL;
(c) a dense HCLT with about as many parameters as (b) ends with (a larger latent size), trained
    like (a), its best epoch by validation LL;
and compression from (a): `pcc train a.pcz --compress ...`, the smallest model within 1% of its start.

    python bench/prune_grow.py --data ../shared/data/twenty_datasets --datasets plants accidents dna \
        --latents 32 --dense-epochs 100 --epochs 30 --rounds 3 --patience 5
    python bench/prune_grow.py --datasets mnist --mnist ../shared/data/mnist --latents 8 --dense-epochs 10 \
        --epochs 5 --rounds 2 --patience 2 --step 0.1 --step-end 0.01 --work runs/prune_grow_mnist

With the released SparsePC loop (`--preset paper`: its rounds, growth noise, warm-up and
per-round schedule; `--epochs` shortens the rounds for the CPU) and the released HCLT recipe for
(a) and (c) (`--knots 1,0.1,0.01,0.001` over --dense-epochs), on the digits too, two seeds:

    python bench/prune_grow.py --datasets digits nltcs dna --latents 16 --preset paper --epochs 60 \
        --warmup 20 --dense-epochs 60 --knots 1,0.1,0.01,0.001 --pseudocount 0.01 --seeds 0 1 \
        --no-compress --work runs/pg_paper

Each line of the log is the exact command; results go to WORK[/sSEED]/NAME.result.json.
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


def _source(name: str, V: int, latents: int, train: Path) -> str:
    """The HCLT: binary variables, or MNIST's 784 pixels as categorical(256) with the tree
    learned on x // 16 from 5,000 rows (as the released HCLT code does)."""
    if name == "mnist":
        decl, extra = "var x[784] : categorical(256)\nimage = [28, 28]", ", bins=16, max_rows=5000"
    elif name == "digits":
        decl, extra = "var x[64] : categorical(17)\nimage = [8, 8]", ""
    else:
        decl, extra = f"var x[{V}] : binary", ""
    return f'{decl}\nname = "{name}-hclt{latents}"\nroot = hclt(x, latents={latents}, data="{_where(train)}"{extra})\n'


def _where(train) -> str:
    return str(train) if str(train).startswith("builtin:") else str(Path(train).resolve())


def _spec(work: Path, name: str, V: int, latents: int, train: Path) -> Path:
    spec = work / f"{name}_h{latents}.pc"
    spec.write_text(f"# HCLT for {name}\n" + _source(name, V, latents, train))
    return spec


def _sets(name: str, args) -> tuple[tuple[Path, Path, Path], int]:
    """(train, valid, test) files and the number of variables. MNIST: the last 5,000 training
    images are the validation set, written as .npy under the work folder."""
    if name == "digits":
        return ("builtin:digits", "builtin:digits:valid", "builtin:digits:test"), 64
    if name != "mnist":
        d = Path(args.data) / name
        sets = tuple(d / f"{name}.{s}.data.gz" for s in ("train", "valid", "test"))
        return sets, np.loadtxt(sets[2], delimiter=",", max_rows=1).size
    import gzip

    def images(f):
        return np.frombuffer(gzip.open(Path(args.mnist) / f).read(), np.uint8, offset=16).reshape(-1, 784)

    train, test = images("train-images-idx3-ubyte.gz"), images("t10k-images-idx3-ubyte.gz")
    sets = tuple(Path(args.work) / f"mnist_{s}.npy" for s in ("train", "valid", "test"))
    for path, x in zip(sets, (train[:55000], train[55000:], test)):
        np.save(path, x)
    return sets, 784


def _train(spec: Path, sets: tuple, out: Path, args, learner: list[str], preset: bool = False) -> float:
    """`pcc train` once (a finished run is not repeated); `preset`: the learner's preset sets the
    schedule, batch and pseudocount, so none are passed."""
    train, valid, test = sets
    cmd = ["pcc", "train", str(spec), "--data", str(train), "--valid", str(valid), "--test", str(test)]
    if not preset:
        cmd += ["-b", str(args.batch), "--pseudocount", str(args.pseudocount)]
        if args.knots:
            cmd += ["--step-size", args.knots, "--drop-last"]
        else:
            cmd += ["--step-size", str(args.step), "--step-size-end", str(args.step_end), "--schedule", args.schedule]
    cmd += ["--seed", str(args.seed), "-o", str(out), "--samples", "0"]
    cmd += learner
    print("$ " + shlex.join(cmd), flush=True)
    done = out.with_suffix(".seconds")
    if out.exists() and done.exists():  # trained by an earlier run of this script
        return float(done.read_text())
    t0 = time.perf_counter()
    with open(out.with_suffix(".log"), "w") as log:
        subprocess.run([sys.executable, "-m", "pccompile.cli", *cmd[1:]], check=True, stdout=log, stderr=log)
    done.write_text(f"{time.perf_counter() - t0:.1f}")
    return float(done.read_text())


def _latents_for(params: int, name: str, V: int, train: Path, low: int) -> int:
    """The smallest latent size whose dense HCLT has at least `params` parameters."""

    def count(h: int) -> int:
        return pc.compile(_source(name, V, h, train)).circuit.stats()["parameters"]

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
    sets, V = _sets(name, args)
    work = Path(args.work) / (f"s{args.seed}" if args.seed else "")
    work.mkdir(parents=True, exist_ok=True)
    dense = work / f"{name}_dense_h{args.latents}.pcz"
    seconds_a = _train(
        _spec(work, name, V, args.latents, sets[0]), sets, dense, args, ["--epochs", str(args.dense_epochs)]
    )
    a = _best_epoch(dense.with_name(dense.stem + ".ckpt.pcz"))
    a["parameters"] = pc.load(dense).circuit.stats()["parameters"]
    if args.preset:
        pg = f"preset={args.preset},epochs={args.epochs}" + (
            f",warmup={args.warmup}" if args.warmup is not None else ""
        )
    else:
        pg = f"rounds={args.rounds},fraction={args.fraction},factor=2,noise={args.noise},epochs={args.epochs},"
        pg += f"patience={args.patience},growth={args.growth},warmup={args.warmup or 0}"
    pg += f",{args.pg_extra}" if args.pg_extra else ""
    seconds = _train(dense, sets, work / f"{name}_pg.pcz", args, ["--prune-grow", pg], preset=bool(args.preset))
    rows = json.loads((work / f"{name}_pg.rounds.json").read_text())
    best = max(rows, key=lambda r: r["valid_ll"])
    h = _latents_for(best["parameters"], name, V, sets[0], args.latents)
    matched = work / f"{name}_dense_h{h}.pcz"  # (a) itself when the best round is round 0
    seconds_c = _train(_spec(work, name, V, h, sets[0]), sets, matched, args, ["--epochs", str(args.dense_epochs)])
    c = _best_epoch(matched.with_name(matched.stem + ".ckpt.pcz"))
    c["parameters"] = pc.load(matched).circuit.stats()["parameters"]
    result = {
        "seed": args.seed,
        "preset": args.preset,
        "dataset": name,
        "vars": V,
        "dense": a,
        "prune_grow": best,
        "rounds": rows,
        "matched_latents": h,
        "matched": c,
        "seconds_dense": seconds_a,
        "seconds_pg": seconds,
        "seconds_matched": seconds_c,
    }
    line = (
        f"{name} seed {args.seed}: (a) dense h{args.latents} test {a['test_ll']:.3f} ({a['parameters']:,} params, "
        f"{seconds_a:.0f} s) | (b) prune-grow round {best['round']} test {best['test_ll']:.3f} "
        f"({best['parameters']:,} params, {seconds:.0f} s) | (c) dense h{h} test {c['test_ll']:.3f} "
        f"({c['parameters']:,} params, {seconds_c:.0f} s)"
    )
    if args.compress:
        result["compress"], note = _compress(name, dense, sets, work, args)
        line += " | " + note
    (work / f"{name}.result.json").write_text(json.dumps(result, indent=1))
    print(line, flush=True)
    return result


def _compress(name: str, dense: Path, sets, work: Path, args) -> tuple[dict, str]:
    """Compression from (a): the smallest model within 1% of its start."""
    seconds = _train(dense, sets, work / f"{name}_compress.pcz", args, ["--compress", args.compress])
    squeezed = json.loads((work / f"{name}_compress.rounds.json").read_text())
    start = squeezed[0]["valid_ll"]
    kept = [r for r in squeezed if r["valid_ll"] >= start - 0.01 * abs(start)][-1]
    note = (
        f"compression: {squeezed[0]['edges']:,} -> {kept['edges']:,} sum edges, valid {start:.3f} -> "
        f"{kept['valid_ll']:.3f}, test {squeezed[0]['test_ll']:.3f} -> {kept['test_ll']:.3f}"
    )
    return {"start": squeezed[0], "kept": kept, "seconds": seconds}, note


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/twenty_datasets")
    ap.add_argument("--datasets", nargs="+", default=["plants", "accidents", "dna"], help="DEBD names, or mnist")
    ap.add_argument("--mnist", default="../shared/data/mnist", help="the folder of MNIST's idx files")
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
    ap.add_argument("--compress", default="fraction=0.3,tolerance=0.01,epochs=3,rounds=10", help="from (a)")
    ap.add_argument("--no-compress", dest="compress", action="store_const", const="", help="skip compression")
    ap.add_argument("--preset", default="", help="a --prune-grow preset (paper): its schedule for (b)")
    ap.add_argument("--knots", default="", help="step knots for (a) and (c), e.g. 1,0.1,0.01,0.001 (with --drop-last)")
    ap.add_argument("--growth", default="released", help="the grow noise form without a preset")
    ap.add_argument("--warmup", type=int, default=None, help="of each prune-grow round (default: the preset's, else 0)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--pg-extra", default="", help="more --prune-grow settings, e.g. pseudocount_growth=1")
    args = ap.parse_args()
    Path(args.work).mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        for name in args.datasets:
            args.seed = seed
            run(name, args)


if __name__ == "__main__":
    main()
