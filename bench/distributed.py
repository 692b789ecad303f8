"""Data-parallel EM on the CPU: steps per second with 1 and N gloo processes, and the bytes
each step all-reduces against the parameter count; with `--tasks lvd flows`, the
seconds of latent variable distillation (patches encoder) and of the edge flows prune-grow
reads, each split over the ranks.

    OMP_NUM_THREADS=1 python bench/distributed.py --ranks 1 2 --tasks em lvd flows --out bench/results_distributed.jsonl

Each configuration runs under torch.distributed.run (one thread per process), trains `--epochs`
epochs of mini-batch EM after one warm-up epoch, and rank 0 reports. Circuits: the digits HCLT
(latents 32) and an MNIST HCLT (latents 8, 784 x categorical(256), 10,000 training rows).
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

CIRCUITS = {
    "digits-hclt32": ("examples/digits.pc", "builtin:digits"),
    "mnist-hclt8": ("MNIST", None),
}


def _circuit(circuit: str, device: str):
    import numpy as np

    import pccompile as pc
    from pccompile.datasets import load_builtin

    if circuit == "digits-hclt32":
        return pc.compile("examples/digits.pc", device=device), load_builtin("builtin:digits")
    from mnist import idx_images  # bench/mnist.py: python puts this folder first on the path

    x = idx_images(Path(os.environ["MNIST"]) / "train-images-idx3-ubyte.gz")[:10000].astype(np.int64)
    np.save("/tmp/pcc_mnist10k.npy", x)
    spec = 'var px[784] : categorical(256)\nimage = [28, 28]\nroot = hclt(px, latents=8, data="/tmp/pcc_mnist10k.npy", bins=16, max_rows=5000)\n'
    return pc.compile(spec, device=device), x


def _em(model, x, group, epochs: int, batch: int) -> dict:
    """Steps per second of mini-batch EM, after a warm-up epoch."""
    from pccompile.learn import TrainConfig, Trainer

    Trainer(model, TrainConfig(epochs=1, batch_size=batch, seed=0), x, group=group).run()  # warm-up
    before = dict(group.traffic)
    steps = epochs * -(-len(x) // batch)
    t0 = time.perf_counter()
    Trainer(model, TrainConfig(epochs=epochs, batch_size=batch, seed=0), x, group=group).run()
    seconds = time.perf_counter() - t0
    return {
        "steps_per_s": steps / seconds,
        "bytes_per_step": (group.traffic["bytes"] - before["bytes"]) / steps,
        "calls_per_step": (group.traffic["calls"] - before["calls"]) / steps,
    }


def _lvd(model, x, group, epochs: int, batch: int) -> dict:
    """Seconds of LVD with the patches encoder (k-means split by latent, counts all-reduced)."""
    from pccompile.lvd import LVDOptions, distill

    before = dict(group.traffic)
    t0 = time.perf_counter()
    report = distill(model, x, LVDOptions(encoder="patches", rows=5000), group=group)
    return {
        "seconds": time.perf_counter() - t0,
        "kmeans_s": report.seconds["kmeans"],
        "mle_s": report.seconds["mle"],
        "bytes": group.traffic["bytes"] - before["bytes"],
    }


def _flows(model, x, group, epochs: int, batch: int) -> dict:
    """Seconds of the edge flows a prune pass reads (each rank its shard, all-reduced)."""
    from pccompile.analysis import circuit_edge_flows

    circuit = model.to_circuit()
    before = dict(group.traffic)
    t0 = time.perf_counter()
    circuit_edge_flows(circuit, x, batch_size=batch, device=model.device, group=group)
    return {"seconds": time.perf_counter() - t0, "bytes": group.traffic["bytes"] - before["bytes"]}


TASKS = {"em": _em, "lvd": _lvd, "flows": _flows}


def worker(task: str, circuit: str, epochs: int, batch: int, out: str, device: str):
    import torch

    from pccompile.learn.distributed import join, leave

    if device == "cuda":  # NCCL: one GPU per process
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    group = join()
    model, x = _circuit(circuit, device)
    row = {"task": task, "circuit": circuit, "ranks": group.world, "batch": batch}
    row |= TASKS[task](model, x, group, epochs, batch)
    if group.is_main:
        row |= {"parameters": model.circuit.stats()["parameters"], "sum_weights": int(model.sum_logits.numel())}
        with open(out, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
    leave()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--circuits", nargs="+", default=list(CIRCUITS))
    ap.add_argument("--tasks", nargs="+", default=["em"], choices=list(TASKS))
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--mnist", default="../shared/data/mnist")
    ap.add_argument("--out", default="bench/results_distributed.jsonl")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--worker", nargs=4)
    a = ap.parse_args()
    if a.worker:
        return worker(a.worker[0], a.worker[1], int(a.worker[2]), a.batch, a.worker[3], a.device)
    Path(a.out).unlink(missing_ok=True)
    for task, circuit, n in ((t, c, n) for t in a.tasks for c in a.circuits for n in a.ranks):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            str(n),
            "--master-port",
            str(port),
        ]
        cmd += [
            __file__,
            "--batch",
            str(a.batch),
            "--device",
            a.device,
            "--worker",
            task,
            circuit,
            str(a.epochs),
            a.out,
        ]
        env = dict(os.environ, OMP_NUM_THREADS="1", MNIST=str(Path(a.mnist).resolve()))
        subprocess.run(cmd, env=env, check=True)


if __name__ == "__main__":
    main()
