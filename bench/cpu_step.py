"""One EM step of an MNIST-sized HCLT on the CPU, per backend, beside this machine's floor.

    python bench/cpu_step.py --latents 16 32 --backends torch cpu --threads 2

The circuit: an HCLT over MNIST's 784 pixels as categorical(256), on the Chow-Liu tree of 5,000
training images in 16 bins (as bench/mnist.py builds it), one batch of 512 training images;
without `--mnist` a random tree and random values (whose high fan-out makes the fused sums read
more factor rows). `--grown 0.75` prunes that fraction of the sum edges by flow on the batch
and grows every vector to twice its size (a prune-grow round's circuit: masked sums at about
25% density); `--model runs/.../pg.best.pcz` times a saved model instead (a prune-grow round's);
`--sparse-density 0 0.5` then times the CPU target with masked sums run dense (0) and as
sparse blocks, in the same run. The floor is what the arithmetic and the input layer's
memory traffic alone would take: the sum layers' FLOPs (2 per edge per row each for the forward
product, the flows and the weight flows: 6) at the `torch.mm` rate measured in the same run, plus
the input layer's bytes (its [rows, B] values written and its flows read) at the measured copy
bandwidth. Prints one line per backend and latent size; `--json` appends them to a file. To compare with an
older version in the same run, run this script with that checkout's interpreter and `--label`.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

import numpy as np
import torch
from pcc_run import commit
from timing import median_seconds

import pccompile as pc
from pccompile.learn.em import em_step
from pccompile.structures import chow_liu_tree, hclt_from_tree


def tree_and_batch(mnist: Path, V: int, B: int) -> tuple[np.ndarray, torch.Tensor]:
    """The HCLT's tree (parents) and one batch: MNIST's Chow-Liu tree of 5,000 training images in
    16 bins, and its first B images, where the idx files are, else a random tree over V variables
    and random values."""
    images = mnist / "train-images-idx3-ubyte.gz"
    if images.exists():
        train = np.frombuffer(gzip.open(images).read(), np.uint8, offset=16).reshape(-1, 784)
        _, parent = chow_liu_tree(train // 16, 16, max_rows=5000)  # 5,000 rows drawn from all of them
        return parent, torch.as_tensor(train[:B].astype(np.int64))
    print(f"no MNIST images at {images}: timing a random tree over random values", file=sys.stderr)
    rng = np.random.default_rng(0)
    parent = np.array([-1] + [int(rng.integers(0, i)) for i in range(1, V)])
    return parent, torch.as_tensor(rng.integers(0, 256, (B, V)))


def mnist_hclt(mnist: Path, B: int, latents: int):
    """(the HCLT over MNIST's pixels as categorical(256) on tree_and_batch's tree, its batch of
    B images): the circuit the one-process A/B scripts time."""
    parent, x = tree_and_batch(mnist, 784, B)
    return hclt_from_tree(parent, 256, latents), x


def grown(spec, fraction: float, x: torch.Tensor):
    """A prune-grow round's circuit from `spec`: `fraction` of its sum edges pruned by flow on the
    batch x, every vector grown to twice its size (masked sums at about 1 - fraction density)."""
    start = pc.compile(spec, passes="init").to_circuit()
    return pc.run_passes(start, f"prune{{fraction={fraction}}}, grow{{factor=2}}", data=x.numpy())


def mm_rate() -> float:
    """FLOP/s of torch.mm on 2048 x 2048 matrices: what this machine's matrix product reaches."""
    a, b = torch.rand(2048, 2048), torch.rand(2048, 2048)
    return 2 * 2048**3 / median_seconds(lambda: torch.mm(a, b))


def copy_rate() -> float:
    """Bytes/s of a large copy (read plus write)."""
    a = torch.rand(1 << 24)
    b = torch.empty_like(a)
    return 2 * a.numel() * 4 / median_seconds(lambda: b.copy_(a))


@torch.no_grad()
def phases(model, xi, xr) -> dict:
    """Median ms of each part of an EM step, run apart: the sum weights' normalisation, the
    forward pass (inputs and layers), the backward pass, the input statistics, the M-step."""
    from pccompile.ir import family

    from pccompile.analysis.flows import encoded_flows
    from pccompile.learn.em import em_update

    ex = model.executor
    logw = model.sum_log_weights(padded=True)
    mars = model.node_values(xi, xr, logw).clone()
    grad = torch.ones(xi.shape[0])
    flows, _ = ex.backward_flows(mars, logw, grad)
    parts = list(zip(model.program.input_partitions, model.inputs))
    stats = encoded_flows(model, xi, xr)
    saved = [p.detach().clone() for p in model.parameters()]

    def m_step():
        em_update(model, stats, 0.1, 0.1)
        for p, v in zip(model.parameters(), saved):
            p.copy_(v)

    def statistics_():  # the backend's counting kernel where it has one, as pccompile.analysis.flows does
        for part, h in parts:
            f = flows[part.start : part.start + part.size]
            if ex.input_stats(part, h.vars, f, xi, xr) is None:
                family(part.dist).stats(part, dict(h.named_parameters()), h.vars, f, xi, xr)

    timed = {
        "normalise": lambda: model.sum_log_weights(padded=True),
        "forward": lambda: model.node_values(xi, xr, logw, reuse=True),
        "backward": lambda: ex.backward_flows(mars, logw, grad, reuse=True),
        "statistics": statistics_,
        "m_step (with a parameter restore)": m_step,
    }
    return {name: round(median_seconds(fn) * 1e3, 1) for name, fn in timed.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latents", type=int, nargs="+", default=[32])
    ap.add_argument("--backends", nargs="+", default=["torch", "cpu"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--vars", type=int, default=784)
    ap.add_argument("--mnist", type=Path, default=Path("../shared/data/mnist"), help="folder of MNIST's idx files")
    ap.add_argument("--json", default=None)
    ap.add_argument("--phases", action="store_true", help="also time the step's parts apart")
    ap.add_argument("--grown", type=float, default=None, help="prune this fraction by flow, then grow x2")
    ap.add_argument("--model", type=Path, default=None, help="a saved MNIST model (.pcz) instead of a new HCLT")
    ap.add_argument("--sparse-density", type=float, nargs="+", default=[0.5], help="CPU target option(s)")
    ap.add_argument("--label", default="", help="appended to each row's backend (e.g. 'before' for an older checkout)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    parent, x = tree_and_batch(args.mnist, args.vars, args.batch)
    B = args.batch
    flops_rate, bytes_rate = mm_rate(), copy_rate()
    for L in args.latents:
        spec = (
            pc.load(args.model, backend="torch").to_circuit()
            if args.model
            else pc.build(hclt_from_tree(parent, 256, L))
        )
        if args.grown is not None:
            spec = grown(spec, args.grown, x)
        runs = [(b, d) for b in args.backends for d in (args.sparse_density if b == "cpu" else [None])]
        for backend, density in runs:
            options = {} if density is None else {"cpu": {"sparse_density": density}}  # none: runs on older checkouts
            model = pc.compile(spec, backend=backend, **options)
            xi, xr = model.encode(x)
            edges = model.program.num_sum_params
            input_rows = sum(p.size for p in model.program.input_partitions)
            floor = 6 * edges * B / flops_rate + 2 * input_rows * B * 4 / bytes_rate
            step = median_seconds(lambda: em_step(model, xi, xr, 0.1, 0.1))
            with torch.no_grad():
                fwd = median_seconds(lambda: model(x))
            row = {
                "latents": None if args.model else L,
                "model": str(args.model) if args.model else None,
                "backend": model.backend + (f" ({args.label})" if args.label else ""),
                "grown": args.grown,
                "sparse_density": density,
                "em_step_ms": round(step * 1e3, 1),
                "forward_ms": round(fwd * 1e3, 1),
                "floor_ms": round(floor * 1e3, 1),
                "x_floor": round(step / floor, 1),
                "sum_edges": edges,
                "threads": args.threads,
                "mm_gflops": round(flops_rate / 1e9, 1),
                "copy_gbs": round(bytes_rate / 1e9, 1),
            }
            if args.phases:
                row["phases_ms"] = phases(model, xi, xr)
            print(json.dumps(row), flush=True)
            if args.json:
                row |= {"command": "python bench/cpu_step.py " + " ".join(sys.argv[1:]), "commit": commit()}
                with open(args.json, "a") as fh:
                    fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
