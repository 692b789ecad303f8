"""The CPU target's table inputs on the autograd path (an Adam step), kernels against torch, in
one process: the same model, the two ways taking turns.

    python bench/table_lookup_ab.py --latents 32 --threads 2 --rounds 7

The circuit is bench/cpu_step.py's MNIST HCLT (784 categorical(256) pixels). With the kernels,
each partition's rows are looked up by the lookup kernel and the logits' gradients come from
the counting kernel (codegen.cpu.inputs.TableLookup); the torch way is the torch backend's
gather and autograd's scatter back through it. A step is forward, backward and Adam's update.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from cpu_step import mnist_hclt
from pccompile.codegen.torch_backend import TorchExecutor

import pccompile as pc


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latents", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--mnist", type=Path, default=Path(__file__).resolve().parents[1] / "../shared/data/mnist")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    spec, x = mnist_hclt(args.mnist, args.batch, args.latents)
    model = pc.compile(pc.build(spec), backend="cpu")
    ex = model.executor
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    ways = {"torch gather": TorchExecutor.input_block, "kernels": type(ex).input_block}

    def step():
        opt.zero_grad()
        (-model(x).mean()).backward()
        opt.step()

    times = {name: [] for name in ways}
    for fn in ways.values():  # warm-up
        ex.input_block = fn.__get__(ex)
        step()
    for _ in range(args.rounds):
        for name, fn in ways.items():
            ex.input_block = fn.__get__(ex)
            t = time.perf_counter()
            step()
            step()
            times[name].append((time.perf_counter() - t) / 2)
    print(f"| MNIST HCLT, latents {args.latents}, Adam step | median ms | fastest ms |")
    print("|---|---:|---:|")
    for name, ts in times.items():
        print(f"| {name} | {statistics.median(ts) * 1e3:.1f} | {min(ts) * 1e3:.1f} |")


if __name__ == "__main__":
    main()
