"""Poon-Domingos (PD) structure for images: rectangular regions split along rows and columns at
multiples of `delta`; every split is a product of its two halves, a region sums its splits."""

from __future__ import annotations

from pccompile import builder
from pccompile.ir import ArgumentError, Region
from pccompile.ir.limits import MAX_NODE_VECTORS, check_limit


def pd(height: int, width: int, num_cats, *, latents: int = 4, delta: int = 2, first_var: int = 0) -> builder.Vec:
    if height < 1 or width < 1 or delta < 1:
        raise ArgumentError("pd needs a positive image shape and delta")
    if latents < 1:
        raise ArgumentError(f"pd needs latents >= 1, got {latents}")
    hs, ws = -(-height // delta), -(-width // delta)  # grid segments per axis
    regions = hs * (hs + 1) // 2 * (ws * (ws + 1) // 2)
    check_limit(
        f"pd node vectors (about, for {height}x{width} with delta {delta})", regions * (hs + ws), MAX_NODE_VECTORS
    )
    cache: dict[tuple[int, int, int, int], builder.Vec] = {}

    def pixel(r: int, c: int, size: int) -> builder.Vec:
        return builder.input_vector(first_var + r * width + c, size, num_cats)

    def region(r0: int, r1: int, c0: int, c1: int, size: int) -> builder.Vec:
        key = (r0, r1, c0, c1)
        if key in cache and cache[key].size == size:
            return cache[key]
        splits = []
        for r in range(r0 + delta, r1, delta):
            splits.append(builder.multiply(region(r0, r, c0, c1, latents), region(r, r1, c0, c1, latents)))
        for c in range(c0 + delta, c1, delta):
            splits.append(builder.multiply(region(r0, r1, c0, c, latents), region(r0, r1, c, c1, latents)))
        if not splits:  # a block no larger than delta x delta: factorised pixels
            pixels = [pixel(r, c, latents) for r in range(r0, r1) for c in range(c0, c1)]
            prod = pixels[0] if len(pixels) == 1 else builder.multiply(*pixels)
            node = prod if size == latents else builder.summate(prod, size=size)
        else:
            node = builder.summate(*splits, size=size)
        if size == latents:
            node.region = Region(
                f"rect[{r0}:{r1},{c0}:{c1}]",
                tuple(first_var + r * width + c for r in range(r0, r1) for c in range(c0, c1)),
            )
            cache[key] = node
        return node

    return region(0, height, 0, width, 1)
