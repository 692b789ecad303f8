"""The pruning plot: the drop in train and test log-likelihood after pruning 10..90% of a trained
HCLT's edges by flow (EFLOW), at random (ERAND) and by weight (EPARAM), beside Theorem 2's
first-order bound for flow pruning, (1/|D|) sum over the pruned edges of F_{n,c}(D).

    python bench/pruning_plot.py MODEL.pcz --train builtin:digits --test builtin:digits:test --png out.png
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import pccompile as pc
from pccompile import run_passes as run
from pccompile.analysis import circuit_edge_flows
from pccompile.io.data import load_array


def mean_ll(circuit, x) -> float:
    with torch.no_grad():
        return float(pc.compile(circuit)(x).double().mean())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--png", default="pruning.png")
    args = ap.parse_args()
    circuit = pc.load(args.model).to_circuit()
    train, test = load_array(args.train), load_array(args.test)
    flows = circuit_edge_flows(circuit, train)
    base = {"train": mean_ll(circuit, train), "test": mean_ll(circuit, test)}
    fractions = [0.1, 0.3, 0.5, 0.7, 0.9]
    drops = {c: {"train": [], "test": []} for c in ("flow", "random", "magnitude")}
    bound = []
    print(f"{'fraction':>8} {'criterion':>10} {'train drop':>11} {'test drop':>10} {'bound':>8}")
    for f in fractions:
        for crit in drops:
            pruned = run(circuit, f"prune{{fraction={f},criterion={crit}}}", data=train)
            for split, x in (("train", train), ("test", test)):
                drops[crit][split].append(base[split] - mean_ll(pruned, x))
            line = f"{f:>8.1f} {crit:>10} {drops[crit]['train'][-1]:>11.4f} {drops[crit]['test'][-1]:>10.4f}"
            if crit == "flow":
                removed = sum(
                    float(fl[~pruned.edge_mask(pruned.nodes[k])].sum())
                    if k in pruned.nodes and pruned.edge_mask(pruned.nodes[k]).shape == fl.shape
                    else float(fl.sum())
                    for k, fl in flows.items()
                )
                bound.append(removed / len(train))
                line += f" {bound[-1]:>8.4f}"
            print(line, flush=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    for ax, split in zip(axes, ("train", "test")):
        for crit, style in (("flow", "o-"), ("random", "s-"), ("magnitude", "^-")):
            ax.plot(np.array(fractions) * 100, drops[crit][split], style, label=crit)
        if split == "train":
            ax.plot(np.array(fractions) * 100, bound, "k--", label="Theorem 2 (first order)")
        ax.set_xlabel("edges pruned (%)")
        ax.set_title(f"{split} LL drop")
        ax.set_yscale("symlog", linthresh=0.1)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean LL drop (nats)")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(args.png, dpi=110)
    print(f"plot: {args.png}")


if __name__ == "__main__":
    main()
