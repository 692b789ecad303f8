"""EM statistics of a categorical input partition (flow per row and category, plus missing):
the general scatter against the batched one-hot product used when rows come in runs per variable.

    python bench/input_stats.py --vars 64 --latents 64 --batch 512
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from pccompile.ir import InputPartition

import pccompile as pc
from pccompile import flows
from pccompile.structures import hclt_from_tree


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vars", type=int, default=64)
    ap.add_argument("--latents", type=int, default=64)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--cats", type=int, default=256)
    args = ap.parse_args()
    V = args.vars
    parent = np.array([-1] + [(i - 1) // 2 for i in range(1, V)])
    model = pc.compile(pc.build(hclt_from_tree(parent, args.cats, args.latents)))
    x_int, _ = model.encode(torch.randint(0, args.cats, (args.batch, V)))
    part, h = model.program.input_partitions[0], model.inputs[0]
    f = torch.rand(part.size, args.batch)

    general = InputPartition(part.dist, part.num_cats, part.start, part.vars)
    general.__dict__["run_length"] = None  # as if the rows were in any order: the scatter

    def median_ms(p) -> float:
        times = []
        for _ in range(7):
            t = time.perf_counter()
            flows._discrete_counts(p, h.vars, f, x_int, args.cats)
            times.append((time.perf_counter() - t) * 1000)
        return statistics.median(times)

    print(
        f"{part.size} input rows x batch {args.batch}, {args.cats} categories: "
        f"scatter {median_ms(general):.1f} ms, batched one-hot product {median_ms(part):.1f} ms"
    )


if __name__ == "__main__":
    main()
