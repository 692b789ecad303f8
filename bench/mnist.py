"""HCLT on MNIST or Fashion-MNIST (784 pixels as categorical(256), no binarisation) trained with
`pcc train`.

    python bench/mnist.py --mnist ../shared/data/mnist --latents 16 --epochs 5
    python bench/mnist.py --latents 32 --epochs 60 --valid 3000 --shape released \
        --knots 1,0.1,0.01,0.001 --pseudocount 0.01 --work runs/mnist_released --json bench/results_mnist.jsonl
    python bench/mnist.py --latents 32 --valid 3000 --shape released --work runs/mnist_released \
        --prune-grow preset=paper,epochs=8,warmup=2,rounds=3 --json bench/results_mnist.jsonl

Split: the last `--valid` training images (default 5,000; the released prune-grow code holds out
5%, 3,000) are the validation set; the 10,000 test images are the test set. `--shape released`
is PyJuice's HCLT (no sum on tree leaves, `leaf_sums=0`), for which the published figures are. The Chow-Liu tree is learned on x // 16 from 5,000 rows (as the
released HCLT code does). Prints the exact command and the test bits per dimension.
"""

import argparse
import gzip
import json
import math
import shlex
from pathlib import Path

import numpy as np
from pcc_run import best_epoch, commit, data_flags, keep, parameters, run, train_command


def idx_images(path: Path) -> np.ndarray:
    return np.frombuffer(gzip.open(path).read(), np.uint8, offset=16).reshape(-1, 784)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mnist", type=Path, default=Path("../shared/data/mnist"))
    ap.add_argument("--work", type=Path, default=Path("runs/mnist"))
    ap.add_argument("--latents", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--valid", type=int, default=5000, help="training images held out for validation")
    ap.add_argument("--shape", choices=["ours", "released"], default="ours")
    ap.add_argument("--knots", default=None, help="step-size knots, e.g. 1,0.1,0.01,0.001 (with --drop-last)")
    ap.add_argument("--pseudocount", default="0.1")
    ap.add_argument("--prune-grow", default=None, help="prune-grow options; starts from the dense model in --work")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="append the result row to this file")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    train = idx_images(a.mnist / "train-images-idx3-ubyte.gz")
    test = idx_images(a.mnist / "t10k-images-idx3-ubyte.gz")
    np.save(a.work / "train.npy", train[: len(train) - a.valid])
    np.save(a.work / "valid.npy", train[len(train) - a.valid :])
    np.save(a.work / "test.npy", test)
    spec = a.work / f"mnist_hclt{a.latents}.pc"
    spec.write_text(
        f'var px[784] : categorical(256)\nimage = [28, 28]\nname = "mnist-hclt{a.latents}"\n'
        f'root = hclt(px, latents={a.latents}, data="train.npy", bins=16, max_rows=5000'
        + (", leaf_sums=0" if a.shape == "released" else "")
        + ")\n"
    )
    out = a.work / f"hclt{a.latents}.pcz"
    if a.prune_grow:
        return prune_grow(a, out)
    cmd = train_command(spec, a.work, out, a.epochs, a.batch, a.knots, a.pseudocount) + ["--samples", "16"]
    head = commit()  # the code that runs, before anything else lands
    seconds = run(cmd)
    best = best_epoch(a.work / f"hclt{a.latents}.ckpt.pcz")
    row = {
        "data": a.mnist.name,
        "latents": a.latents,
        "shape": a.shape,
        "epochs": a.epochs,
        "parameters": parameters(out),
        "best_epoch": best["epoch"],
        "valid_ll": best["valid_ll"],
        "test_ll": best["test_ll"],
        "test_bpd": -best["test_ll"] / (784 * math.log(2)),
        "seconds": round(seconds, 1),
        "command": shlex.join(cmd),
        "commit": head,
    }
    keep(row, a.json)


def prune_grow(a, dense: Path) -> None:
    """Prune-grow from the dense model `dense` (trained by an earlier run of this script), with
    the learner's own schedule (its preset's); the row holds every round."""
    out = a.work / "pg" / "pg.pcz"
    out.parent.mkdir(exist_ok=True)
    cmd = ["pcc", "train", str(dense), *data_flags(a.work), "--prune-grow", a.prune_grow, "--seed", str(a.seed)]
    cmd += ["-o", str(out), "--samples", "16"]
    head = commit()  # the code that runs, before anything else lands
    seconds = run(cmd)
    rounds = json.loads(out.with_name("pg.rounds.json").read_text())
    best = max(rounds, key=lambda r: r["valid_ll"])
    row = {
        "data": a.mnist.name,
        "latents": a.latents,
        "shape": a.shape,
        "learner": f"prune-grow {a.prune_grow}",
        "seed": a.seed,
        "best_round": best["round"],
        "test_bpd": -best["test_ll"] / (784 * math.log(2)),
        "rounds": rounds,
        "seconds": round(seconds, 1),
        "command": shlex.join(cmd),
        "commit": head,
    }
    keep(row, a.json)


if __name__ == "__main__":
    main()
