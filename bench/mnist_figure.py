"""Test bits per dimension against parameter count on MNIST: dense HCLTs, prune-grow rounds and
LVD-initialised HCLTs, beside the published HCLT and Sparse PC figures. Reads the results rows;
regenerate after new runs with

    python bench/mnist_figure.py            # writes bench/results_mnist_bpd_params.png

Dense rows and LVD rows are points (their `parameters`); the latest prune-grow row is a line
through its rounds, round 0 (the dense model trained on) first. Rows without a parameter count
are skipped.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PUBLISHED = {"HCLT (Dang et al. 2022)": 1.20, "Sparse PC (Dang et al. 2022)": 1.14}


def bpd(test_ll: float) -> float:
    return -test_ll / (784 * math.log(2))


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=Path("bench/results_mnist.jsonl"))
    ap.add_argument(
        "--lvd",
        type=Path,
        nargs="+",
        default=[Path("bench/results_lvd_mnist.jsonl"), Path("bench/results_lvd_mnist_scale.jsonl")],
    )
    ap.add_argument("--out", type=Path, default=Path("bench/results_mnist_bpd_params.png"))
    a = ap.parse_args()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    mnist = [r for r in rows(a.results) if r.get("data") == "mnist"]
    runs = [r for r in mnist if "rounds" in r]
    for r in [r for r in mnist if "rounds" not in r] + runs[-1:]:  # the latest prune-grow run
        if "rounds" in r:
            rounds = [x for x in r["rounds"] if x.get("test_ll") is not None]
            xs, ys = [x["parameters"] for x in rounds], [bpd(x["test_ll"]) for x in rounds]
            label = "prune-grow" + (" (partial)" if r.get("partial") else "")
            ax.plot(xs, ys, "o-", color="tab:red", label=label)
            for x, y, rd in zip(xs, ys, rounds):
                ax.annotate(f"round {rd['round']}", (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
        elif "parameters" in r:
            marker = "s" if r.get("shape") == "released" else "D"
            ax.plot(r["parameters"], r["test_bpd"], marker, color="tab:blue", label=f"dense HCLT ({r['shape']} shape)")
            ax.annotate(f"L={r['latents']}", (r["parameters"], r["test_bpd"]), textcoords="offset points",
                        xytext=(5, -10), fontsize=8)  # fmt: skip
    for r in (r for path in a.lvd for r in rows(path)):
        if "parameters" in r:
            color = "tab:green" if r["init"].startswith("lvd") else "tab:gray"
            kind = "patch HCLT" if r.get("structure") == "patch" else "HCLT"
            ax.plot(
                r["parameters"],
                r["test_bpd"],
                "^",
                color=color,
                label=f"{kind}, {r['init']} init, {r['epochs']} epochs",
            )
    for i, (name, value) in enumerate(PUBLISHED.items()):
        ax.axhline(value, ls="--", lw=1, color=("black", "tab:red")[i], label=f"{name}: {value}")
    handles, labels = ax.get_legend_handles_labels()
    seen = dict(zip(labels, handles))  # one legend entry per label
    ax.legend(seen.values(), seen.keys(), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("test bits per dimension")
    ax.set_title("MNIST (784 pixels as categorical(256))")
    fig.tight_layout()
    fig.savefig(a.out, dpi=120)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
