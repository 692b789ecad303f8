"""Two ways of the CPU target's executor taking turns in one process, on bench/cpu_step.py's
MNIST HCLT: each switch turns one of its parts back to what it replaced.

    python bench/cpu_switch_ab.py --switch first_touch --latents 32 --threads 2 --rounds 7

Switches:
- `first_touch`: the backward's flows buffer zeroed first and every flow added (the kernels'
  first-flow flags all 0), against each row's first flow stored (codegen/cpu/first_touch.py).
- `sum_m_step`: the dense sum weights' M-step by the runtime's torch update, against the
  kernel (`em_dense_blocks`); only the EM step differs.
- `normalised_tables`: every forward takes the categorical tables' log-softmax, against reading
  the logits an M-step left normalised (codegen/cpu/inputs.py: log_table).
- `fused_m_step`: the EM step's categorical counts formed, then the M-step kernel, against both
  in one pass (pc_categorical_em); only the EM step differs.

The model starts from the parameters after one EM step, as training sees them. Each round
times an EM step, a forward pass and a backward pass (flows from the kept buffers) with the
switch off (the old way) and then on; the table gives the medians over rounds and each way's
fastest round. Sequential processes on this machine differ by up to 15% for the same
code, so a change is measured here, in one process.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
from cpu_step import mnist_hclt
from pccompile.codegen.cpu.first_touch import FirstTouch
from pccompile.codegen.torch_backend.executor import TorchExecutor
from timing import mean_seconds

import pccompile as pc
from pccompile.learn.em import em_step


def first_touch(ex, on: bool) -> None:
    if not hasattr(ex, "_first_on"):
        ex._first_on = ex._first
        flags = {k: tuple(torch.zeros_like(t) for t in v) for k, v in ex._first.flags.items()}
        ex._first_off = FirstTouch(flags, ex._first.untouched)
    ex._first = ex._first_on if on else ex._first_off
    if on:
        ex.__dict__.pop("_new_flows", None)
    else:
        ex._new_flows = lambda mars, reuse: TorchExecutor._new_flows(ex, mars, reuse)


def sum_m_step(ex, on: bool) -> None:
    if on:
        ex.__dict__.pop("em_dense_blocks", None)
    else:
        ex.em_dense_blocks = lambda *args: TorchExecutor.em_dense_blocks(ex, *args)


def normalised_tables(ex, on: bool) -> None:
    from pccompile.codegen.cpu import inputs
    from pccompile.ir import family

    module = sys.modules[type(ex).__module__]  # where the executor looks its tables up
    module.log_table = inputs.log_table if on else (lambda part, params: family(part.dist).log_table(part, params))


def fused_m_step(ex, on: bool) -> None:
    ex._bench_reduce = None if on else (lambda stats: stats)  # a reduce asks for formed counts


SWITCHES = {
    "first_touch": first_touch,
    "sum_m_step": sum_m_step,
    "normalised_tables": normalised_tables,
    "fused_m_step": fused_m_step,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--switch", choices=list(SWITCHES), required=True)
    ap.add_argument("--latents", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=3, help="calls per timing")
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--mnist", type=Path, default=Path(__file__).resolve().parents[1] / "../shared/data/mnist")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    spec, x = mnist_hclt(args.mnist, args.batch, args.latents)
    model = pc.compile(pc.build(spec), backend="cpu")
    ex, switch = model.executor, SWITCHES[args.switch]
    xi, xr = model.encode(x)
    em_step(model, xi, xr, 1.0, 0.1)  # a fresh model's random parameters double the forward's time
    logw = model.sum_log_weights(padded=True).detach()
    root = torch.ones(args.batch)
    with torch.no_grad():
        mars = model.node_values(xi, xr, logw).clone()
    parts = {
        "EM step": lambda: em_step(model, xi, xr, 0.1, 0.1, reduce=getattr(ex, "_bench_reduce", None)),
        "forward": lambda: model.node_values(xi, xr, logw, reuse=True),
        "backward": lambda: ex.backward_flows(mars, logw, root, reuse=True),
    }
    times = {(way, part): [] for way in ("off", "on") for part in parts}
    with torch.no_grad():
        for _ in range(args.rounds):
            for way in ("off", "on"):
                switch(ex, way == "on")
                for part, fn in parts.items():
                    times[way, part].append(mean_seconds(fn, args.calls) * 1e3)
    print(
        f"| {args.switch}, MNIST HCLT latents {args.latents} | off: median ms | on | on / off | off: fastest | on: fastest |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for part in parts:
        off, on = times["off", part], times["on", part]
        a, b = statistics.median(off), statistics.median(on)
        print(f"| {part} | {a:.1f} | {b:.1f} | {b / a:.2f} | {min(off):.1f} | {min(on):.1f} |")


if __name__ == "__main__":
    main()
