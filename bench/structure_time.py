"""Time to learn the Chow-Liu tree of MNIST (784 pixels in 16 bins), as bench/vs_pyjuice.py does.

python bench/structure_time.py ../shared/data/mnist/train-images-idx3-ubyte.gz --rows 5000
"""

from __future__ import annotations

import argparse
import gzip
import time

import numpy as np

from pccompile.structures import chow_liu_tree


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", help="train-images-idx3-ubyte.gz")
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    args = ap.parse_args()
    raw = gzip.open(args.images).read()
    x = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 784).astype(np.int64) // 16
    t = time.perf_counter()
    root, parent = chow_liu_tree(x, 16, max_rows=args.rows, device=args.device)
    depth = max(_depth(parent, v) for v in range(len(parent)))
    print(
        f"Chow-Liu tree of {args.rows} rows x 784 pixels (16 bins): {time.perf_counter() - t:.1f} s, "
        f"root {root}, depth {depth}"
    )


def _depth(parent, v):
    d = 0
    while parent[v] >= 0:
        v, d = parent[v], d + 1
    return d


if __name__ == "__main__":
    main()
