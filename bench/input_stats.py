"""EM statistics of a categorical input partition (flow per row and category, plus missing), three
ways on the same flows: the scatter by index over runs of rows per variable (what
the categorical family's stats do when rows come in runs, as in an HCLT), the general scatter over any
row order, and the one-hot batched product [V, L, B] x [V, B, k + 1] it replaced.

    python bench/input_stats.py --vars 784 --latents 32 --batch 512 --cats 256   # MNIST HCLT
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from pccompile.ir import InputPartition, family
from pccompile.ir.families import variable_codes
from timing import median_seconds


def onehot_product(part, vars_t, f, x_int):
    """The former method: a [V, B, k + 1] one-hot of the batch's codes, one bmm per variable."""
    k, L = part.num_cats, part.run_length
    nv, B = part.size // L, f.shape[1]
    code = variable_codes(part, vars_t, x_int)
    onehot = torch.zeros(nv, B, k + 1, dtype=f.dtype)
    onehot.scatter_(2, code.unsqueeze(2), 1.0)
    res = torch.bmm(f.reshape(nv, L, B), onehot).reshape(part.size, k + 1)
    return {"counts": res[:, :k], "missing": res[:, k]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vars", type=int, default=784)
    ap.add_argument("--latents", type=int, default=32)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--cats", type=int, default=256)
    args = ap.parse_args()
    V, L, k = args.vars, args.latents, args.cats
    vars_t = torch.arange(V).repeat_interleave(L)
    part = InputPartition("categorical", k, 2, vars_t.numpy())
    general = InputPartition("categorical", k, 2, vars_t.numpy())
    general.__dict__["run_length"] = None  # as if the rows were in any order: the general scatter
    x_int = torch.randint(-1, k, (args.batch, V))
    f = torch.rand(part.size, args.batch)
    stats = family("categorical")
    ways = {
        "scatter over runs": lambda: stats.stats(part, vars_t, f, x_int, None),
        "general scatter": lambda: stats.stats(general, vars_t, f, x_int, None),
        "one-hot product": lambda: onehot_product(part, vars_t, f, x_int),
    }
    ref = ways["scatter over runs"]()
    for name, fn in ways.items():
        out = fn()
        np.testing.assert_allclose(out["counts"].numpy(), ref["counts"].numpy(), rtol=1e-4, atol=1e-3)
        ms = 1e3 * median_seconds(fn, 7)
        print(f"{name:>18}: {ms:8.1f} ms  ({part.size} rows x batch {args.batch}, {k} values)")


if __name__ == "__main__":
    main()
