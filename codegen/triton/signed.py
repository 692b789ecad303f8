"""Triton kernels for signed circuits (pccompile.signed): a lowered Program's product and sum
partitions over two buffers, log-magnitudes `mags` and signs `signs` [R, B], forward only.

A product adds its factors' log-magnitudes and multiplies their signs. A sum group's program
takes a tile of its G nodes and of the samples: the max log-magnitude of the K children per
sample (0 where all are -inf), then for each child its signed exponential times the nodes'
weights, accumulated as outer products; the result's log| | plus the max, and its sign. An exact
cancellation gives log 0 = -inf with sign 0. The same arithmetic as the CPU target's
pc_signed_sum_forward and the torch pass in pccompile/signed/program.py.

Kernels are compiled on first use (a GPU, or TRITON_INTERPRET=1 on the CPU, as the tests run).
"""

from __future__ import annotations

import functools

import torch

BLOCK_B = 32  # samples per program


@functools.lru_cache(maxsize=1)
def _kernels():
    import triton
    import triton.language as tl

    @triton.jit
    def signed_prod_fwd(mags, signs, rows, child, B, M, F: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK: tl.constexpr):
        offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_b = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        mask_m = offs_m < M
        mask = mask_m[:, None] & (offs_b[None, :] < B)
        acc = tl.zeros((BLOCK_M, BLOCK), dtype=tl.float32)
        sg = tl.full((BLOCK_M, BLOCK), 1.0, dtype=tl.float32)
        for f in tl.static_range(F):
            c = tl.load(child + offs_m * F + f, mask=mask_m, other=1)
            acc += tl.load(mags + c[:, None] * B + offs_b[None, :], mask=mask, other=0.0)
            sg *= tl.load(signs + c[:, None] * B + offs_b[None, :], mask=mask, other=1.0)
        r = tl.load(rows + offs_m, mask=mask_m, other=0)
        tl.store(mags + r[:, None] * B + offs_b[None, :], acc, mask=mask)
        tl.store(signs + r[:, None] * B + offs_b[None, :], sg, mask=mask)

    @triton.jit
    def signed_sum_fwd(mags, signs, rows, child, w, B, G, NGB, K, BLOCK_G: tl.constexpr, BLOCK: tl.constexpr):
        g = tl.program_id(0) // NGB
        offs_g = (tl.program_id(0) % NGB) * BLOCK_G + tl.arange(0, BLOCK_G)
        offs_b = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        mask_g, mask_b = offs_g < G, offs_b < B
        top = tl.full((BLOCK,), float("-inf"), dtype=tl.float32)
        for k in range(K):
            c = tl.load(child + g * K + k)
            top = tl.maximum(top, tl.load(mags + c * B + offs_b, mask=mask_b, other=float("-inf")))
        top = tl.where(top == float("-inf"), 0.0, top)
        acc = tl.zeros((BLOCK_G, BLOCK), dtype=tl.float32)
        for k in range(K):
            c = tl.load(child + g * K + k)
            lm = tl.load(mags + c * B + offs_b, mask=mask_b, other=float("-inf"))
            sg = tl.load(signs + c * B + offs_b, mask=mask_b, other=0.0)
            e = sg * tl.exp(lm - top)
            wk = tl.load(w + (g * G + offs_g) * K + k, mask=mask_g, other=0.0)
            acc += wk[:, None] * e[None, :]
        r = tl.load(rows + g * G + offs_g, mask=mask_g, other=0)
        mask = mask_g[:, None] & mask_b[None, :]
        out = tl.log(tl.abs(acc)) + top[None, :]
        sign = tl.where(acc > 0.0, 1.0, tl.where(acc < 0.0, -1.0, 0.0))
        tl.store(mags + r[:, None] * B + offs_b[None, :], out, mask=mask)
        tl.store(signs + r[:, None] * B + offs_b[None, :], sign, mask=mask)

    return signed_prod_fwd, signed_sum_fwd


def signed_layer(kind: str, rows: torch.Tensor, child: torch.Tensor, w: torch.Tensor | None, mags, signs) -> None:
    """One partition: `rows` [m] or [g * G] output rows, `child` [m, F] factor rows or [g, K]
    children, `w` [g, G, K] signed weights of a sum (None for a product)."""
    import triton

    prod, summ = _kernels()
    B = mags.shape[1]
    if kind == "product":
        m, F = child.shape
        block_m = triton.next_power_of_2(min(m, 16))
        prod[(triton.cdiv(m, block_m), triton.cdiv(B, BLOCK_B))](
            mags, signs, rows, child, B, m, F=F, BLOCK_M=block_m, BLOCK=BLOCK_B
        )
        return
    g, G, K = w.shape
    block_g = triton.next_power_of_2(min(G, 32))
    ngb = triton.cdiv(G, block_g)
    summ[(g * ngb, triton.cdiv(B, BLOCK_B))](mags, signs, rows, child, w, B, G, ngb, K, BLOCK_G=block_g, BLOCK=BLOCK_B)
