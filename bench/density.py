"""Density-estimation benchmark: HCLT trained with `pcc train` on the binary DEBD datasets.

Writes one .pc file per dataset, runs the exact `pcc train` command for it, and reads the test
log-likelihood at the epoch of best validation log-likelihood from the checkpoint's history.

    python bench/density.py --data ../shared/data/twenty_datasets --latents 32 --epochs 30 \
        --datasets nltcs plants baudio jester bnetflix accidents dna tretail pumsb_star kosarek
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

from pccompile.io import read


def run(
    name: str,
    root: Path,
    work: Path,
    latents: int,
    epochs: int,
    batch: int,
    step: float,
    step_end: float,
    pseudocount: float,
) -> dict:
    d = root / name
    train, valid, test = (d / f"{name}.{s}.data.gz" for s in ("train", "valid", "test"))
    V = np.loadtxt(test, delimiter=",", max_rows=1).size
    spec = work / f"{name}.pc"
    spec.write_text(
        f'# HCLT for {name}\nvar x[{V}] : binary\nname = "{name}-hclt{latents}"\n'
        f'root = hclt(x, latents={latents}, data="{train.resolve()}")\n'
    )
    out = work / f"{name}.pcz"
    cmd = [
        "pcc",
        "train",
        str(spec),
        "--data",
        str(train),
        "--valid",
        str(valid),
        "--test",
        str(test),
        "--epochs",
        str(epochs),
        "-b",
        str(batch),
        "--step-size",
        str(step),
        "--step-size-end",
        str(step_end),
        "--schedule",
        "linear",
        "--pseudocount",
        str(pseudocount),
        "-o",
        str(out),
        "--samples",
        "0",
    ]
    t0 = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / cmd[0]), *cmd[1:]], check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - t0
    record, _ = read(work / f"{name}.ckpt.pcz")
    hist = record["extra"]["train_state"]["history"]
    best = max(hist, key=lambda r: r["valid_ll"])
    return {
        "dataset": name,
        "vars": int(V),
        "latents": latents,
        "epochs": epochs,
        "best_epoch": best["epoch"],
        "valid_ll": best["valid_ll"],
        "test_ll": best["test_ll"],
        "final_test_ll": hist[-1]["test_ll"],
        "seconds": round(seconds, 1),
        "command": shlex.join(cmd),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/twenty_datasets"))
    ap.add_argument("--work", type=Path, default=Path("runs/density"))
    ap.add_argument(
        "--datasets",
        nargs="+",
        default=[
            "nltcs",
            "plants",
            "baudio",
            "jester",
            "bnetflix",
            "accidents",
            "tretail",
            "pumsb_star",
            "dna",
            "kosarek",
        ],
    )
    ap.add_argument("--latents", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--step", type=float, default=0.2)
    ap.add_argument("--step-end", type=float, default=0.02)
    ap.add_argument("--pseudocount", type=float, default=0.1)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.datasets:
        r = run(
            name,
            args.data,
            args.work,
            args.latents,
            args.epochs,
            args.batch,
            args.step,
            args.step_end,
            args.pseudocount,
        )
        rows.append(r)
        print(json.dumps(r), flush=True)
    print(
        "\n| dataset | vars | test LL (best valid epoch) | valid LL | epoch | seconds |\n|---|---:|---:|---:|---:|---:|"
    )
    for r in rows:
        print(
            f"| {r['dataset']} | {r['vars']} | {r['test_ll']:.3f} | {r['valid_ll']:.3f} | {r['best_epoch']} | "
            f"{r['seconds']} |"
        )


if __name__ == "__main__":
    main()
