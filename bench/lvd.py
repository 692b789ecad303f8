"""Latent variable distillation against random initialisation: HCLTs of the same size trained
with the same EM budget, at several latent sizes, on the digits or MNIST.

    python bench/lvd.py --data digits --latents 32 128 --epochs 30 --out bench/results_lvd_digits.jsonl
    python bench/lvd.py --data digits --latents 16 64 --structures pixel patch --patch 2 \
        --inits random lvd-patches lvd-mae --epochs 30 --out bench/results_lvd_patch_digits.jsonl
    python bench/lvd.py --data mnist --mnist ../shared/data/mnist --latents 8 16 --epochs 3 \
        --batch 512 --step 0.1 --step-end 0.1 --out bench/results_lvd_mnist.jsonl

Per (latent size, init): the LLs after initialisation (epoch 0) and after every epoch, the test
LL at the epoch of best validation LL, the seconds LVD took; one JSON line each, and a PNG of
valid bpd over epochs next to --out. Inits: random (the compile-time draw), lvd-patches, lvd-mae.
Larger latents on a GPU (not run yet):

    python bench/lvd.py --data mnist --latents 64 128 256 --inits random lvd-mae --epochs 10 \
        --batch 512 --step 0.1 --step-end 0.01 --device cuda --out bench/results_lvd_mnist_gpu.jsonl
"""

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
from mnist import idx_images  # bench/mnist.py: python puts this folder first on the path

import pccompile as pc
from pccompile.datasets import load_builtin
from pccompile.learn import TrainConfig, Trainer
from pccompile.learn.trainer import mean_log_likelihood
from pccompile.lvd import LVDOptions, distill


def mnist(root: Path):
    def images(name):
        return idx_images(root / name).astype(np.int64)

    train, test = images("train-images-idx3-ubyte.gz"), images("t10k-images-idx3-ubyte.gz")
    return train[:55000], train[55000:], test


def spec_text(data: str, latents: int, train_path: Path, structure: str = "pixel", patch: int = 2) -> str:
    """An HCLT with a latent per pixel, or (structure "patch") a patch HCLT, a latent per patch."""
    if data == "digits":
        head, source, extra = "var px[64] : categorical(17)\nimage = [8, 8]\n", "builtin:digits", ""
    else:
        head, source, extra = "var px[784] : categorical(256)\nimage = [28, 28]\n", train_path, ", max_rows=5000"
    if structure == "patch":
        return head + f'root = patch_hclt(px, latents={latents}, patch={patch}, data="{source}"{extra})\n'
    bins = "" if data == "digits" else ", bins=16"
    return head + f'root = hclt(px, latents={latents}, data="{source}"{bins}{extra})\n'


def _label(structure: str, init: str) -> str:
    return init if structure == "pixel" else f"patch {init}"


def run_one(a, splits, latents, init, work, structure="pixel"):
    train, valid, test = splits
    spec = work / f"{a.data}_{structure}_hclt{latents}.pc"
    spec.write_text(spec_text(a.data, latents, (work / "train.npy").resolve(), structure, a.patch))
    model = pc.compile(spec, seed=a.seed, device=a.device)
    t0 = time.perf_counter()
    lvd = None
    if init != "random":
        lvd = distill(model, train, LVDOptions(encoder=init.split("-")[1], seed=a.seed, steps=a.mae_steps))
    lvd_s = time.perf_counter() - t0
    curve = [
        {
            "epoch": 0,
            "train_ll": mean_log_likelihood(model, train),
            "valid_ll": mean_log_likelihood(model, valid),
            "test_ll": mean_log_likelihood(model, test),
        }
    ]
    cfg = TrainConfig(
        epochs=a.epochs,
        batch_size=a.batch,
        optimizer="em",
        step_size=a.step,
        step_size_end=a.step_end,
        schedule="linear",
        pseudocount=0.1,
        seed=a.seed,
    )
    t1 = time.perf_counter()
    for r in Trainer(model, cfg, train, valid, test).run():
        curve.append({"epoch": r.epoch, "train_ll": r.train_ll, "valid_ll": r.valid_ll, "test_ll": r.test_ll})
    best = max(curve, key=lambda r: r["valid_ll"])
    V = train.shape[1]
    return {
        "data": a.data,
        "latents": latents,
        "structure": structure,
        "init": init,
        "parameters": model.circuit.stats()["parameters"],
        "epochs": a.epochs,
        "lvd_seconds": round(lvd_s, 2),
        "lvd_parts": None if lvd is None else {k: round(v, 2) for k, v in lvd.seconds.items()},
        "train_seconds": round(time.perf_counter() - t1, 1),
        "best_epoch": best["epoch"],
        "test_ll": best["test_ll"],
        "test_bpd": -best["test_ll"] / (V * math.log(2)),
        "valid_bpd": -best["valid_ll"] / (V * math.log(2)),
        "init_valid_bpd": -curve[0]["valid_ll"] / (V * math.log(2)),
        "curve": curve,
    }


def plot(rows, path: Path, V: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({r["latents"] for r in rows})
    fig, axes = plt.subplots(1, len(sizes), figsize=(5 * len(sizes), 3.6), squeeze=False)
    for ax, k in zip(axes[0], sizes):
        for r in rows:
            if r["latents"] == k:
                e = [c["epoch"] for c in r["curve"]]
                label = _label(r.get("structure", "pixel"), r["init"])
                ax.plot(e, [-c["valid_ll"] / (V * math.log(2)) for c in r["curve"]], marker=".", label=label)
        ax.set_title(f"{rows[0]['data']} HCLT, latents {k}")
        ax.set_xlabel("EM epoch (0: after initialisation)")
        ax.set_ylabel("valid bpd")
        lo = min(-c["valid_ll"] / (V * math.log(2)) for r in rows if r["latents"] == k for c in r["curve"][1:])
        ax.set_ylim(lo * 0.98, lo * 1.25)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", choices=["digits", "mnist"], default="digits")
    ap.add_argument("--mnist", type=Path, default=Path("../shared/data/mnist"))
    ap.add_argument("--latents", type=int, nargs="+", default=[32, 128])
    ap.add_argument("--inits", nargs="+", default=["random", "lvd-patches", "lvd-mae"])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--step", type=float, default=0.2)
    ap.add_argument("--step-end", type=float, default=0.02)
    ap.add_argument("--mae-steps", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--structures", nargs="+", default=["pixel"], help="pixel (hclt) and/or patch (patch_hclt)")
    ap.add_argument("--patch", type=int, default=2, help="patch side of the patch structure")
    ap.add_argument("--device", default="cpu", help="cuda: the GPU runs for larger latents (backend auto: triton)")
    ap.add_argument("--work", type=Path, default=Path("runs/lvd"))
    ap.add_argument("--out", type=Path, default=Path("bench/results_lvd_digits.jsonl"))
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    if a.data == "digits":
        splits = tuple(load_builtin(f"builtin:digits:{s}") for s in ("train", "valid", "test"))
    else:
        splits = mnist(a.mnist)
        np.save(a.work / "train.npy", splits[0])
    rows = []
    with open(a.out, "w") as f:
        for k in a.latents:
            for structure in a.structures:
                for init in a.inits:
                    r = run_one(a, splits, k, init, a.work, structure)
                    rows.append(r)
                    f.write(json.dumps(r) + "\n")
                    f.flush()
                    print(
                        f"{a.data} latents {k:4d} {_label(structure, init):18s} {r['parameters']:>9,} params "
                        f"init valid bpd {r['init_valid_bpd']:.3f} -> test bpd {r['test_bpd']:.4f} (epoch "
                        f"{r['best_epoch']}, lvd {r['lvd_seconds']} s, train {r['train_seconds']} s)",
                        flush=True,
                    )
                    plot(rows, a.out.with_suffix(".png"), splits[0].shape[1])


if __name__ == "__main__":
    main()
