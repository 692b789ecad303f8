"""Row-by-row trimming against whole 16-row blocks after pruning: parameters, partitions and the
torch forward time, side by side in one process (one thread).

    OMP_NUM_THREADS=1 python bench/trim_speed.py

The circuit: the digits HCLT at latents 64 after two random prune-grow rounds (75% pruned, grown
twice), then pruned once more and trimmed both ways."""

import time

import torch
from pccompile.passes import Grow, Prune, Trim

import pccompile as pc
from pccompile.datasets import load_builtin


def main() -> None:
    torch.set_num_threads(1)
    x = torch.as_tensor(load_builtin("builtin:digits")[:1024])
    c = pc.compile('var px[64] : categorical(17)\nroot = hclt(px, latents=64, data="builtin:digits")\n').to_circuit()
    for r in range(2):
        c = Grow(seed=r).run(Trim(block=16).run(Prune(fraction=0.75, criterion="random", seed=r, trim=False).run(c)))
    last = Prune(fraction=0.75, criterion="random", seed=9, trim=False).run(c)
    models = {"block 16": pc.compile(Trim(block=16).run(last)), "row": pc.compile(Trim().run(last))}
    times = {k: [] for k in models}
    with torch.no_grad():
        for m in models.values():
            m(x)
        for _ in range(5):
            for k, m in models.items():
                t0 = time.perf_counter()
                m(x)
                times[k].append(time.perf_counter() - t0)
    for k, m in models.items():
        parts = sum(len(L.partitions) for L in m.program.layers)
        print(
            f"{k:8s} {m.circuit.stats()['parameters']:>9,} parameters {parts:4d} partitions {min(times[k]) * 1e3:7.1f} ms"
        )
    print(f"row / block 16 forward time: {min(times['row']) / min(times['block 16']):.2f}")


if __name__ == "__main__":
    main()
