"""Pruned circuits are cheaper to run: forward and EM-step time of an HCLT pruned by flow to
100/50/25/10% of its prunable edges, against the dense circuit in the same run (torch backend;
ratios only on this machine).

    python bench/prune_speed.py --latents 64 --batch 512 [--mnist PATH] [--backend triton --device cuda]

Without --mnist the HCLT is over the bundled 8x8 digits; with it, over 784-pixel MNIST
(categorical(256), the tree learned on x // 16 from 5,000 rows), trained on its first rows.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import pccompile as pc
from pccompile import run_passes as run
from pccompile.learn import em_step


def _timed(fn, repeat: int, device: str = "cpu") -> float:
    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    fn()  # warm-up (Triton's JIT, CUDA-graph capture)
    fn()
    sync()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return min(times)  # the least disturbed run: other jobs share this machine


def _data(args):
    if args.mnist is None:
        return pc.datasets.load_builtin("builtin:digits"), "var px[64] : categorical(17)", '"builtin:digits"', ""
    import gzip

    with gzip.open(args.mnist) as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784).astype(np.int64)[: args.rows]
    np.save("/tmp/prune_speed_mnist.npy", x)
    return x, "var px[784] : categorical(256)", '"/tmp/prune_speed_mnist.npy"', ", bins=16, max_rows=5000"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--latents", type=int, default=64)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--mnist", default=None, help="train-images-idx3-ubyte.gz")
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--backend", default="torch", help="torch or triton")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    x, decl, data, extra = _data(args)
    spec = f"{decl}\nroot = hclt(px, latents={args.latents}, data={data}{extra})\n"
    dense = pc.compile(spec, passes="init").to_circuit()
    batch = x[: args.batch]
    print(
        f"HCLT over {x.shape[1]} variables, latents {args.latents}, batch {args.batch}, {args.backend} on {args.device}"
    )
    print(
        f"{'level':>6} {'kept':>6} {'sum edges':>11} {'forward s':>10} {'vs dense':>9} {'EM step s':>10} {'vs dense':>9}"
    )
    base = None
    for kept, gran in (
        (1.0, "edge"),
        (0.5, "edge"),
        (0.25, "edge"),
        (0.1, "edge"),
        (0.5, "block"),
        (0.25, "block"),
        (0.1, "block"),
    ):
        prune = f"prune{{fraction={1 - kept},granularity={gran}}}"
        circuit = dense if kept == 1.0 else run(dense, prune, data=x[:1000])
        model = pc.compile(circuit, backend=args.backend, device=args.device)
        xi, xr = model.encode(batch)
        with torch.no_grad():
            fwd = _timed(lambda: model(batch), args.repeat, args.device)
        step = _timed(lambda: em_step(model, xi, xr, 0.1, 0.1), args.repeat, args.device)
        base = base or (fwd, step)
        print(
            f"{gran:>6} {kept:>6.2f} {circuit.stats()['sum edges']:>11,} {fwd:>10.4f} {fwd / base[0]:>9.2f} "
            f"{step:>10.4f} {step / base[1]:>9.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
