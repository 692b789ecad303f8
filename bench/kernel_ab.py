"""The CPU target's kernels against an older version of them, in one process: the same model, the
same buffers, the two libraries taking turns call by call.

    python bench/kernel_ab.py --base HEAD --latents 32 --threads 2 --rounds 7

`--base` is a git revision whose CPU kernels (codegen/cpu/kernels/, or a path to one C file) are
built beside the working tree's (both with the same flags, cached as usual). The circuit is bench/cpu_step.py's MNIST HCLT, or with
`--structure rat_spn` a RAT-SPN over 69 binary variables (depth 3, 4 repetitions, Tucker layers
of `--latents` sums); `--grown 0.75` prunes it by flow and grows it (bench/cpu_step.py), so that
its masked sums run as sparse blocks. Each round
times, with the base library and then with the current one (the two in turn first), the parts
`--parts` names: an EM step, a forward pass and a backward pass (flows from the kept buffers),
and apart the input layer's kernels: the table lookup (`inputs`) and the EM counts over the kept
flows (`statistics`). The table gives the medians over rounds, current / base, and each
library's fastest round (the steadier figure on a shared machine). Only the kernels differ: the
Python around them is the working tree's, so the signatures of the kernels a part calls must not
have changed between the two (`--parts inputs statistics` compares table kernels across a change
of the sum kernels' arguments). Every part starts from the parameters after one EM step: on a
fresh model's random parameters an MNIST forward takes twice as long, which no training step
after the first sees.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
from pathlib import Path

import numpy as np
import torch
from cpu_step import grown, mnist_hclt
from pccompile.codegen.cpu.build import KERNEL_FILES, build_library, kernel_source
from timing import mean_seconds

import pccompile as pc
from pccompile.learn.em import em_step
from pccompile.structures import rat_spn

PARTS = ("em_step", "forward", "backward", "inputs", "statistics")


def base_source(rev: str) -> str:
    """The kernels' source at a git revision (its codegen/cpu/kernels/ files joined as the build
    joins them, or the single kernels.c of older revisions), or a C file's text."""
    if Path(rev).is_file():
        return Path(rev).read_text()

    def show(path: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True)

    single = show("codegen/cpu/kernels.c")
    if single.returncode == 0:
        return single.stdout
    parts = [show(f"codegen/cpu/kernels/{name}") for name in KERNEL_FILES]
    if parts[0].returncode:
        raise SystemExit(f"{rev}: no CPU kernels found ({parts[0].stderr.strip()})")
    return "\n".join(p.stdout for p in parts if p.returncode == 0)  # files split off later are absent


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="HEAD", help="git revision (or C file) to compare with")
    ap.add_argument("--structure", choices=["hclt", "rat_spn"], default="hclt")
    ap.add_argument("--latents", type=int, default=32, help="latents (HCLT), sums and inputs per region (RAT-SPN)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=3, help="calls per timing")
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--mnist", type=Path, default=Path(__file__).resolve().parents[1] / "../shared/data/mnist")
    ap.add_argument("--json", default=None, help="append the result row to this file")
    ap.add_argument("--grown", type=float, default=None, help="prune this fraction by flow, then grow x2")
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS[:3]), help="what to time")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    libs = {"base": build_library(base_source(args.base)), "current": build_library(kernel_source())}
    if args.structure == "hclt":
        spec, x = mnist_hclt(args.mnist, args.batch, args.latents)
    else:  # plants-sized: 69 binary variables, random values
        x = torch.as_tensor(np.random.default_rng(0).integers(0, 2, (args.batch, 69)))
        spec = rat_spn(69, 2, depth=3, repetitions=4, num_sums=args.latents, num_inputs=args.latents)
    spec = pc.build(spec)
    if args.grown is not None:  # masked sums, run as sparse blocks
        spec = grown(spec, args.grown, x)
    model = pc.compile(spec, backend="cpu")
    ex = model.executor
    xi, xr = model.encode(x)
    em_step(model, xi, xr, 1.0, 0.1)  # a trained model's values: a fresh one's random weights double the forward
    saved = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        logw = model.sum_log_weights(padded=True)
        mars = model.node_values(xi, xr, logw).clone()
    grad = torch.ones(x.shape[0])

    def step():
        em_step(model, xi, xr, 0.1, 0.1)
        with torch.no_grad():  # every step from the same parameters
            for p, v in zip(model.parameters(), saved):
                p.copy_(v)

    with torch.no_grad():
        flows, _ = ex.backward_flows(mars, logw, grad)
    params = model.input_params()
    tables = [
        (k, part, h, params[k], slice(part.start, part.start + part.size))
        for k, (part, h) in enumerate(zip(model.program.input_partitions, model.inputs))
    ]

    def inputs():
        for k, part, _, p, rows in tables:
            ex._input_rows(k, part, p, xi, xr, mars[rows])

    def statistics_():
        for _, part, h, _, rows in tables:
            ex.input_stats(part, h.vars, flows[rows], xi, xr)

    every = {
        "em_step": step,
        "forward": lambda: model.node_values(xi, xr, logw, reuse=True),
        "backward": lambda: ex.backward_flows(mars, logw, grad, reuse=True),
        "inputs": inputs,
        "statistics": statistics_,
    }
    parts = {name: every[name] for name in args.parts}
    times = {(lib, part): [] for lib in libs for part in parts}
    with torch.no_grad():
        for lib in libs.values():  # warm-up: first touches, caches
            ex.lib = lib
            for fn in parts.values():
                fn()
        for r in range(args.rounds):  # the order alternates: the second of a pair runs in the first's wake
            for name, lib in list(libs.items())[:: 1 if r % 2 == 0 else -1]:
                ex.lib = lib
                for part, fn in parts.items():
                    times[name, part].append(mean_seconds(fn, args.calls, warm=False))
    row = {
        "structure": args.structure,
        "latents": args.latents,
        "threads": args.threads,
        "base": args.base,
        "rounds": args.rounds,
    }
    print(f"| part | base ({args.base}) ms | current ms | current / base | fastest round: base / current ms |")
    print("|---|---:|---:|---:|---:|")
    for part in parts:
        b, c = (statistics.median(times[n, part]) * 1e3 for n in libs)
        bmin, cmin = (min(times[n, part]) * 1e3 for n in libs)
        row[part] = {"base_ms": round(b, 2), "current_ms": round(c, 2), "base_min_ms": round(bmin, 2)}
        row[part]["current_min_ms"] = round(cmin, 2)
        print(f"| {part} | {b:.1f} | {c:.1f} | {c / b:.2f} | {bmin:.1f} / {cmin:.1f} |")
    if args.json:
        with open(args.json, "a") as fh:
            fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
