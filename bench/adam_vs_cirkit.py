"""Gradient training side by side: an HCLT trained with Adam in pccompile and in cirkit.

Same data, same Chow-Liu tree learner's idea (each library's own), 32 latents / units, 10
epochs, batch 512, the same learning rates; test LL at the end, valid LL for choosing. cirkit
lives in its own venv, for this benchmark only (never a project dependency):

    python3 -m venv /tmp/cirkit && /tmp/cirkit/bin/pip install torch==2.13.0 libcirkit
    python bench/adam_vs_cirkit.py --cirkit-python /tmp/cirkit/bin/python --datasets nltcs plants

Each side runs in its own process (`--side ours|cirkit` prints one JSON line per run).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def load(root: Path, name: str):
    return [
        np.loadtxt(root / name / f"{name}.{s}.data.gz", delimiter=",", dtype=np.int64)
        for s in ("train", "valid", "test")
    ]


def mean_ll(fn, x, batch=2048) -> float:
    return float(sum(float(fn(x[i : i + batch]).double().sum()) for i in range(0, len(x), batch)) / len(x))


def train_loop(model_ll, params, train, epochs, batch, lr, seed):
    import torch

    opt = torch.optim.Adam(params, lr=lr)
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        perm = rng.permutation(len(train))
        for i in range(0, len(train), batch):
            opt.zero_grad()
            (-model_ll(train[perm[i : i + batch]]).mean()).backward()
            opt.step()


def ours(train, valid, test, latents, epochs, batch, lr, seed):
    import torch
    from pccompile.ir import Domain, Variable

    import pccompile as pc
    from pccompile.structures import hclt

    variables = [Variable(f"x{i}", Domain(2)) for i in range(train.shape[1])]
    model = pc.compile(pc.build(hclt(train, latents=latents), variables), seed=seed)
    t0 = time.perf_counter()
    train_loop(lambda x: model(torch.as_tensor(x)), model.parameters(), train, epochs, batch, lr, seed)
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        return mean_ll(model, valid), mean_ll(model, test), model.circuit.stats()["parameters"], seconds


def cirkit(train, valid, test, latents, epochs, batch, lr, seed):
    import torch
    from cirkit.pipeline import compile as cirkit_compile
    from cirkit.templates import data_modalities

    torch.manual_seed(seed)
    symbolic = data_modalities.tabular_data(
        region_graph="chow-liu-tree",
        data=torch.as_tensor(train),
        input_layers={"name": "categorical", "args": {"num_categories": 2}},
        num_input_units=latents,
        sum_product_layer="cp",
        num_sum_units=latents,
    )
    circuit = cirkit_compile(symbolic)

    def ll(x):
        return circuit(torch.as_tensor(x)).reshape(-1)

    t0 = time.perf_counter()
    train_loop(ll, circuit.parameters(), train, epochs, batch, lr, seed)
    seconds = time.perf_counter() - t0
    n_params = sum(p.numel() for p in circuit.parameters())
    with torch.no_grad():
        return mean_ll(ll, valid), mean_ll(ll, test), n_params, seconds


def side(args):
    fn = {"ours": ours, "cirkit": cirkit}[args.side]
    for name in args.datasets:
        data = load(args.data, name)
        for lr in args.lrs:
            valid, test, n_params, seconds = fn(*data, args.latents, args.epochs, args.batch, lr, args.seed)
            row = {"library": args.side, "dataset": name, "lr": lr, "valid_ll": valid, "test_ll": test}
            print(json.dumps({**row, "parameters": int(n_params), "seconds": round(seconds, 1)}), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/twenty_datasets"))
    ap.add_argument("--datasets", nargs="+", default=["nltcs", "plants"])
    ap.add_argument("--lrs", nargs="+", type=float, default=[0.01, 0.1])
    ap.add_argument("--latents", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--side", choices=["ours", "cirkit"])
    ap.add_argument("--cirkit-python", default="/tmp/cirkit/bin/python")
    args = ap.parse_args()
    if args.side:
        return side(args)
    rows = []
    common = ["--data", str(args.data), "--datasets", *args.datasets, "--lrs", *map(str, args.lrs)]
    common += ["--latents", str(args.latents), "--epochs", str(args.epochs), "--batch", str(args.batch)]
    common += ["--seed", str(args.seed)]
    for who, python in (("ours", sys.executable), ("cirkit", args.cirkit_python)):
        out = subprocess.run([python, __file__, *common, "--side", who], check=True, capture_output=True, text=True)
        rows += [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    print("| dataset | library | lr | valid LL | test LL | parameters | seconds |\n|---|---|---:|---:|---:|---:|---:|")
    for r in sorted(rows, key=lambda r: (r["dataset"], r["library"], r["lr"])):
        print(
            f"| {r['dataset']} | {r['library']} | {r['lr']:g} | {r['valid_ll']:.3f} | {r['test_ll']:.3f} "
            f"| {r['parameters']:,} | {r['seconds']} |"
        )


if __name__ == "__main__":
    main()
