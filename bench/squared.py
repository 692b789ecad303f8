"""Squared signed circuits against monotone circuits of the same structure and size, both
trained by Adam with the same budget (pccompile.signed; the monotone twin is the same code with
softmax weights).

    python bench/squared.py --toy        # 2-D rings and spiral: NMM against NMM^2, PNG of each density
    python bench/squared.py --binary     # HCLTs on three binary sets
    python bench/squared.py --cost       # a squared circuit's forward against its monotone one

Rows go to bench/results_squared.jsonl with the command and the commit.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from pcc_run import commit
from pccompile.ir import Circuit, Variable
from pccompile.ir.distributions import REAL

import pccompile as pc
from pccompile.io.data import load_array
from pccompile.signed import SignedCircuit, fit, mean_log_prob
from pccompile.structures import hclt

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "twenty_datasets"
RESULTS = Path(__file__).with_name("results_squared.jsonl")


def _record(row: dict) -> None:
    row = {**row, "command": "python bench/squared.py " + " ".join(sys.argv[1:]), "commit": commit()}
    with RESULTS.open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row))


def _tuned(make, train, valid, test, args, row: dict, batch_size: int) -> SignedCircuit:
    """Train one model per learning rate of args.lrs, each keeping its best validation epoch;
    record every run, the one with the best validation LL marked `selected`; return it."""
    runs = []
    for lr in args.lrs:
        model = make()
        t0 = time.perf_counter()
        hist = fit(model, train, valid=valid, epochs=args.epochs, batch_size=batch_size, lr=lr)
        best = max(range(len(hist)), key=lambda i: hist[i].valid_ll)
        runs.append((mean_log_prob(model, valid), lr, model, best + 1, time.perf_counter() - t0))
    chosen = max(runs, key=lambda r: r[0])
    for valid_ll, lr, model, best_epoch, seconds in runs:
        _record(
            {
                **row,
                "epochs": args.epochs,
                "lr": lr,
                "best_epoch": best_epoch,
                "valid_ll": valid_ll,
                "test_ll": mean_log_prob(model, test),
                "seconds": round(seconds, 1),
                "selected": lr == chosen[1],
            }
        )
    return chosen[2]


# -- 2-D toy densities ---------------------------------------------------------------------------
def rings(n: int, rng) -> np.ndarray:
    """Three concentric rings of radii 1, 2, 3, radial noise 0.1."""
    r = rng.choice([1.0, 2.0, 3.0], n) + rng.normal(0, 0.1, n)
    t = rng.uniform(0, 2 * math.pi, n)
    return np.stack([r * np.cos(t), r * np.sin(t)], 1)


def spiral(n: int, rng) -> np.ndarray:
    """Two interleaved spiral arms, noise 0.1."""
    t = np.sqrt(rng.uniform(0, 1, n)) * 3 * math.pi
    arm = rng.choice([0.0, math.pi], n)
    x = np.stack([t * np.cos(t + arm), t * np.sin(t + arm)], 1) / 3
    return x + rng.normal(0, 0.1, x.shape)


def mixture(k: int, train: np.ndarray, rng, signed: bool) -> Circuit:
    """Sum over k products of two Gaussians (NMM); means at k training points, std 0.5,
    weights 1/k. Signed: the same start, declared signed (NMM^2)."""
    b = pc.builder
    centers = train[rng.choice(len(train), k, replace=False)]
    x = b.inputs(0, k, pc.Gaussian(), mean=centers[:, 0], std=np.full(k, 0.5))
    y = b.inputs(1, k, pc.Gaussian(), mean=centers[:, 1], std=np.full(k, 0.5))
    root = b.summate(b.multiply(x, y), size=1, weights=np.full((1, k), 1.0 / k))
    return pc.build(root, [Variable("x", REAL), Variable("y", REAL)], meta={"signed": signed})


def toy(args) -> None:
    """NMM against NMM^2 at each K of args.ks; one PNG: a row per data set and model, the data
    and each K's learned density."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = {"rings": rings, "spiral": spiral}
    fig, axes = plt.subplots(2 * len(sets), 1 + len(args.ks), figsize=(2.6 * (1 + len(args.ks)), 5.2 * len(sets)))
    g = np.linspace(-4, 4, 200)
    grid = torch.as_tensor(np.stack(np.meshgrid(g, g), -1).reshape(-1, 2), dtype=torch.float32)
    for s, (name, gen) in enumerate(sets.items()):
        data = torch.as_tensor(gen(12000, np.random.default_rng(0)), dtype=torch.float32)
        train, valid, test = data[:10000], data[10000:11000], data[11000:]
        for m, squared in enumerate((False, True)):
            row, kind = 2 * s + m, "squared" if squared else "monotone"
            axes[row, 0].hist2d(train[:, 0].numpy(), train[:, 1].numpy(), bins=120, range=[[-4, 4], [-4, 4]])
            axes[row, 0].set_title(f"{name}: data")
            for col, k in enumerate(args.ks, start=1):

                def make(squared=squared, k=k):
                    circuit = mixture(k, train.numpy(), np.random.default_rng(1), squared)
                    return SignedCircuit(circuit, squared=squared)

                info = {"data": name, "model": f"{kind} mixture", "components": k, "parameters": 5 * k}
                model = _tuned(make, train, valid, test, args, info, batch_size=500)
                with torch.no_grad():
                    dens = model.log_prob(grid).exp().reshape(200, 200).numpy()
                axes[row, col].imshow(dens, origin="lower", extent=[-4, 4, -4, 4])
                axes[row, col].set_title(f"{kind} K={k}: {mean_log_prob(model, test):.3f}", fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    out = Path(__file__).with_name("results_squared_toy.png")
    fig.savefig(out, dpi=80)
    print("wrote", out)


# -- binary sets ---------------------------------------------------------------------------------
def _hclt(train: np.ndarray, latents: int, seed: int) -> Circuit:
    vec = hclt(train, latents=latents, num_cats=[2] * train.shape[1])
    return pc.compile(pc.to_circuit(vec), passes="init", seed=seed).to_circuit()


def _as_signed(c: Circuit) -> Circuit:
    return Circuit(c.variables, c.nodes, c.root, c.params, {**c.meta, "signed": True}, c.regions)


def binary(args) -> None:
    for name in args.datasets:
        split = {
            s: load_array(DATA / name / f"{name}.{s}.data.gz").astype(np.int64) for s in ("train", "valid", "test")
        }
        tensors = {s: torch.as_tensor(v, dtype=torch.float32) for s, v in split.items()}
        start = _hclt(split["train"], args.latents, seed=0)
        for squared in (False, True):

            def make(squared=squared):
                return SignedCircuit(_as_signed(start) if squared else start, squared=squared)

            row = {
                "data": name,
                "model": ("squared" if squared else "monotone") + " HCLT",
                "latents": args.latents,
                "parameters": sum(p.numel() for p in make().parameters()),
            }
            _tuned(make, tensors["train"], tensors["valid"], tensors["test"], args, row, batch_size=256)


# -- cost ----------------------------------------------------------------------------------------
def _time(fn, reps: int) -> float:
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def cost(args) -> None:
    """Forward passes of one HCLT: monotone and squared through pccompile.signed (c(x) on the
    CPU target's signed kernels and on torch; log Z apart), and the monotone circuit compiled."""
    name = args.datasets[0]
    train = load_array(DATA / name / f"{name}.train.data.gz").astype(np.int64)
    x = torch.as_tensor(train[: args.batch], dtype=torch.float32)
    for latents in (8, 16, 32):
        start = _hclt(train, latents, seed=0)
        models = {
            t: (SignedCircuit(start, squared=False, target=t), SignedCircuit(_as_signed(start), target=t))
            for t in ("cpu", "torch")
        }
        compiled = pc.compile(start)
        xi = torch.as_tensor(train[: args.batch])
        row = {"data": name, "latents": latents, "batch": args.batch, "threads": torch.get_num_threads()}
        with torch.no_grad():
            for t, (mono, sq) in models.items():
                row[f"monotone_{t}_ms"] = 1e3 * _time(lambda m=mono: m.log_prob(x), args.reps)
                row[f"squared_c_{t}_ms"] = 1e3 * _time(lambda m=sq: m.signed_values(x), args.reps)
            row["log_z_ms"] = 1e3 * _time(lambda: models["torch"][1].log_norm(), args.reps)
            row["compiled_ms"] = 1e3 * _time(lambda: compiled(xi), args.reps)
        row["backend"] = compiled.backend
        _record(row)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--toy", action="store_true")
    ap.add_argument("--binary", action="store_true")
    ap.add_argument("--cost", action="store_true")
    ap.add_argument("--ks", type=int, nargs="+", default=[4, 8, 16, 32], help="mixture components (toy)")
    ap.add_argument("--latents", type=int, default=8, help="HCLT latents (binary)")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument(
        "--lrs", type=float, nargs="+", default=[0.01, 0.03], help="Adam learning rates, chosen on validation"
    )
    ap.add_argument("--datasets", nargs="+", default=["nltcs", "plants", "baudio"])
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    if not (args.toy or args.binary or args.cost):
        ap.error("choose --toy, --binary or --cost")
    if args.toy:
        toy(args)
    if args.binary:
        binary(args)
    if args.cost:
        cost(args)


if __name__ == "__main__":
    main()
