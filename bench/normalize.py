"""Normalising the sum weights into the kernels' padded buffer: the old way (log-softmax,
concatenate, append the padding slot) against the new one (log-softmax written in place).

    python bench/normalize.py --rows 150000 --width 256
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=150000)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    torch.manual_seed(0)
    k = args.width
    logits = torch.randn(args.rows * k)

    def before():
        lw = torch.cat([logits.view(-1, k).log_softmax(-1).reshape(-1)])
        return torch.cat([lw, lw.new_full((1,), float("-inf"))]).contiguous()

    def now():
        out = torch.empty(args.rows * k + 1)
        torch.log_softmax(logits.view(-1, k), -1, out=out[:-1].view(-1, k))
        out[-1] = float("-inf")
        return out

    assert torch.equal(before(), now())
    for fn in (before, now):
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1000)
        print(f"{fn.__name__:7s} {statistics.median(times):7.1f} ms ({args.rows * k / 1e6:.1f}M weights)")


if __name__ == "__main__":
    main()
