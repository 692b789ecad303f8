"""The A/B that chose the CPU target's technology: one sum layer of an MNIST HCLT at latents 32
(394 groups of 32 nodes over 32 stored children, batch 512), forward, three ways on the same
buffer: the torch backend's chunked batched products, `torch.compile` of the same function
(inductor's C++ code generation), and the CPU target's C kernel (ctypes, OpenMP).

    python bench/cpu_target_ab.py --threads 2
"""

from __future__ import annotations

import argparse
import time

import torch
from pccompile.codegen.cpu.build import load_library
from timing import median_seconds


def median_ms(fn, repeats: int = 7) -> float:
    return 1e3 * median_seconds(fn, repeats)


def layer(children: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """[g, K, B] child log-values, [g, G, K] weights -> [g, G, B] node log-values."""
    m = children.amax(1, keepdim=True).nan_to_num(neginf=0.0)
    return torch.bmm(w, (children - m).exp()).log() + m


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--groups", type=int, default=394)
    ap.add_argument("--latents", type=int, default=32)
    ap.add_argument("--batch", type=int, default=512)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g, L, B = args.groups, args.latents, args.batch
    mars = torch.randn(2 + g * L * 2, B) - 5
    mars[0], mars[1] = float("-inf"), 0.0
    comp = (2 + torch.arange(g * L)).view(g, L, 1).contiguous()
    counts = torch.ones(g, L, dtype=torch.int64)
    rows = (2 + g * L + torch.arange(g * L)).contiguous()
    logw = torch.log_softmax(torch.randn(g, L, L), 2).contiguous()
    w = logw.exp()
    children = mars[2 : 2 + g * L].view(g, L, B)

    def torch_way():
        mars[2 + g * L :] = layer(children, w).view(g * L, B)

    compiled = torch.compile(layer, dynamic=False)
    t0 = time.perf_counter()
    compiled(children, w)
    compile_s = time.perf_counter() - t0

    def inductor_way():
        mars[2 + g * L :] = compiled(children, w).view(g * L, B)

    lib = load_library()

    def c_way():
        lib.pc_sum_forward(
            mars.data_ptr(), B, g, L, L, 1, comp.data_ptr(), counts.data_ptr(), 0, 0, None, None, rows.data_ptr(),
            w.data_ptr(), logw.data_ptr(), 1e-30, args.threads,
        )  # fmt: skip

    out = {}
    for name, fn in (("torch ops", torch_way), ("torch.compile", inductor_way), ("C kernel", c_way)):
        ms = median_ms(fn)
        out[name] = mars[2 + g * L :].clone()
        print(f"{name:>14}: {ms:7.2f} ms, {2 * g * L * L * B / ms / 1e6:6.1f} GFLOP/s")
    print(f"torch.compile's first call (code generation and build): {compile_s:.1f} s")
    for name in ("torch.compile", "C kernel"):
        print(f"{name} against torch ops: max |difference| {(out[name] - out['torch ops']).abs().max().item():.2e}")


if __name__ == "__main__":
    main()
