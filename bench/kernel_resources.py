"""Registers and spills of every Triton kernel variant, compiled for a GPU target on this machine.

    python bench/kernel_resources.py --latents 64 512 --arch 90

For an HCLT over a small tree with 256 categories (the shapes the 784-pixel HCLT launches), each
distinct kernel specialisation is compiled with Triton's own ptxas (no GPU needed) and its
resource usage read from the cubin (see pccompile.codegen.triton.aot). Triton's cache starts
empty, so the compile times are those of a first run.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np
from pccompile.codegen.triton import TritonOptions, emit
from pccompile.codegen.triton.aot import compile_variants, kernel_variants

import pccompile as pc
from pccompile.structures import hclt_from_tree


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latents", type=int, nargs="+", default=[64, 512])
    ap.add_argument("--arch", type=int, default=90)
    args = ap.parse_args()
    os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp()  # cold: compile times are real
    print("| latents | kernel | variant | registers | spill bytes | compile s |")
    print("|---:|---|---|---:|---:|---:|")
    for L in args.latents:
        model = pc.compile(pc.build(hclt_from_tree(np.array([-1, 0, 0, 1, 1]), 256, L)))
        emitted = emit(model.program, TritonOptions())
        for v in compile_variants(kernel_variants(emitted, model.program), emitted, arch=args.arch):
            if v.error:
                print(f"| {L} | {v.kernel} | {v.describe()} | error: {v.error} | | |")
            else:
                print(
                    f"| {L} | {v.kernel} | {v.describe()} | {v.usage['REG']} | {v.usage['STACK']} | "
                    f"{v.compile_s:.1f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
