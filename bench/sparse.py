"""Sparse sums: does the cost fall with the number of kept edges?

An HCLT over the bundled 8x8 digits (64 variables, latents --latents) has a mask put on every
inner sum node, keeping a fraction of its edges: per edge (each edge kept at random), in blocks
(16x16 blocks of the weight matrix kept at random: what pruning at block granularity leaves),
or whole children (a child's column kept or pruned for every row). Every row keeps at least one edge. For each fraction we report the edges kept, the
edges the packed Program processes (kept plus padding; the kernels' work), how the sums were
grouped (a group of >= 16 nodes runs on the matrix units), and the forward time of the torch
backend on this machine relative to the dense circuit.

    python bench/sparse.py --latents 64 --batch 256
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from pccompile.ir import SumNode

import pccompile as pc
from pccompile.io.data import load_array
from pccompile.structures import hclt


def masked(circuit, fraction: float, block: int, rng) -> pc.Circuit:
    if fraction >= 1:
        return circuit
    nodes = dict(circuit.nodes)
    for nid, n in circuit.nodes.items():
        if not isinstance(n, SumNode) or n.size == 1 or nid == circuit.root:
            continue
        K = sum(circuit.nodes[c].size for c in n.children)
        if block == 0:  # whole children pruned, for every row
            keep = rng.random(K) < fraction
            keep[rng.integers(K)] = True
            mask = np.broadcast_to(keep, (n.size, K)).copy()
        else:
            rows, cols = -(-n.size // block), -(-K // block)
            keep = rng.random((rows, cols)) < fraction
            keep[np.arange(rows), rng.integers(cols, size=rows)] = True  # no empty row
            mask = np.kron(keep, np.ones((block, block), bool))[: n.size, :K]
        nodes[nid] = SumNode(n.id, n.name, n.children, n.size, mask, n.tie)
    params = {k: v for k, v in circuit.params.items() if not isinstance(nodes[k], SumNode)}
    return circuit.replace(nodes=nodes, params=params)


def forward_ms(model, x, repeat: int) -> float:
    times = []
    with torch.no_grad():
        model(x)
        for _ in range(repeat):
            t = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latents", type=int, default=64)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--fractions", type=float, nargs="+", default=[1.0, 0.5, 0.25, 0.1, 0.05, 0.02])
    args = ap.parse_args()
    torch.manual_seed(0)
    x = load_array("builtin:digits")
    data = torch.as_tensor(x[: args.batch])
    base = pc.to_circuit(hclt(x, latents=args.latents, num_cats=17))
    print(
        "| sparsity | kept fraction | sum edges kept | edges processed (kept + padding) | sum groups | "
        "nodes in groups of >= 16 | forward ms (torch, CPU) | vs dense |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    dense_ms = None
    for kind, block in (("per edge", 1), ("16x16 blocks", 16), ("whole children", 0)):
        for f in args.fractions:
            if f >= 1 and kind != "per edge":
                continue
            circuit = masked(base, f, block, np.random.default_rng(0))
            model = pc.compile(circuit, backend="torch")
            prog = model.program
            kept = processed = groups = big = 0
            for layer in prog.layers:
                if layer.kind != "sum":
                    continue
                for part in layer.partitions:
                    g, G, K = part.shape
                    processed += g * G * K
                    groups += g
                    big += g * G if G >= 16 else 0
            kept = int(prog.num_sum_params)
            sums = sum(
                g * G for layer in prog.layers if layer.kind == "sum" for g, G, _ in (p.shape for p in layer.partitions)
            )
            ms = forward_ms(model, data, args.repeat)
            dense_ms = dense_ms or ms
            label = "dense" if f >= 1 else kind
            print(
                f"| {label} | {f:g} | {kept:,} | {processed:,} | {groups:,} | {big / sums:.0%} | {ms:.1f} | "
                f"{ms / dense_ms:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
