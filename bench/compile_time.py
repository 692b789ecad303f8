"""Compile time of an HCLT over a chain tree: 784 categorical(256) variables, node vectors of 128.

    python bench/compile_time.py --vars 784 --cats 256 --latents 128 --repeat 5

Builds the structure once with the builder API, then times pccompile.compile (passes, random
initialisation of every parameter, verification, lowering, module construction); prints the
median and the per-stage split of the median run.
"""

import argparse
import statistics
import time

import numpy as np

import pccompile as pc
from pccompile.structures import hclt_from_tree


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vars", type=int, default=784)
    ap.add_argument("--cats", type=int, default=256)
    ap.add_argument("--latents", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    parent = np.arange(-1, a.vars - 1)  # a chain: the deepest tree, one layer pair per variable
    circuit = pc.build(hclt_from_tree(parent, a.cats, a.latents))
    runs = []
    for _ in range(a.repeat):
        rep = pc.CompileReport()
        t = time.perf_counter()
        model = pc.compile(circuit, report=rep)
        runs.append((time.perf_counter() - t, rep.timings))
        del model
    runs.sort(key=lambda r: r[0])
    med = runs[len(runs) // 2]
    s = circuit.stats()
    print(
        f"{a.vars} vars x {a.cats} cats, latents {a.latents}: {s['node vectors']} node vectors, "
        f"{s['sum edges']:,} sum edges, {s['parameters']:,} parameters"
    )
    print(
        f"compile median {statistics.median(r[0] for r in runs):.3f} s over {a.repeat} runs "
        f"(min {runs[0][0]:.3f}, max {runs[-1][0]:.3f}); median run: "
        + ", ".join(f"{k} {v:.3f}" for k, v in med[1].items())
    )


if __name__ == "__main__":
    main()
