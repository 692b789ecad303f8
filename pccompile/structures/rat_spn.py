"""RAT-SPN (Peharz et al. 2019): random binary region splits, repeated, with outer products.

Each repetition splits the variables recursively into two random halves `depth` times. A leaf
region holds `num_inputs` factorised input vectors; an inner region holds `num_sums` sums over the
outer product of its two children; the root mixes every repetition's top outer product.
"""

from __future__ import annotations

import numpy as np

from pccompile import builder
from pccompile.ir import ArgumentError, Region
from pccompile.ir.limits import MAX_NODE_VECTORS, MAX_VECTOR_SIZE, check_limit


def _outer(a: builder.Vec, b: builder.Vec) -> builder.Vec:
    ia = np.repeat(np.arange(a.size), b.size)
    ib = np.tile(np.arange(b.size), a.size)
    return builder.multiply(a, b, index=(ia, ib))


def rat_spn(
    num_vars: int,
    num_cats,
    *,
    depth: int = 2,
    repetitions: int = 2,
    num_sums: int = 4,
    num_inputs: int = 4,
    seed: int = 0,
) -> builder.Vec:
    """num_cats: an int (or None for Gaussian) for all variables, or one entry per variable."""
    if num_vars < 2:
        raise ArgumentError("rat_spn needs at least 2 variables")
    if depth < 1 or 2**depth > num_vars:
        raise ArgumentError(f"depth must be in 1..{int(np.log2(num_vars))} for {num_vars} variables")
    check_limit(
        "rat_spn node vectors (repetitions x (variables + regions))",
        repetitions * (num_vars + 2 ** (depth + 1)),
        MAX_NODE_VECTORS,
    )
    for what, n in (("repetitions", repetitions), ("sums", num_sums), ("inputs", num_inputs)):
        if n < 1:
            raise ArgumentError(f"rat_spn needs {what} >= 1, got {n}")
    check_limit(
        "rat_spn outer products have rows (sums or inputs, squared):", max(num_sums, num_inputs) ** 2, MAX_VECTOR_SIZE
    )
    if seed < 0:
        raise ArgumentError(f"rat_spn needs a seed >= 0, got {seed}")
    cats = list(num_cats) if isinstance(num_cats, (list, tuple, np.ndarray)) else [num_cats] * num_vars
    rng = np.random.default_rng(seed)

    def region(vs: np.ndarray, level: int, top: bool) -> builder.Vec:
        if level == depth:
            vecs = [builder.input_vector(int(v), num_inputs, None if cats[v] is None else int(cats[v])) for v in vs]
            return vecs[0] if len(vecs) == 1 else builder.multiply(*vecs)
        perm = rng.permutation(vs)
        half = len(perm) // 2
        left = region(np.sort(perm[:half]), level + 1, False)
        right = region(np.sort(perm[half:]), level + 1, False)
        prod = _outer(left, right)
        if top:
            return prod
        node = builder.summate(prod, size=num_sums)
        node.region = Region(f"rep{rep}/{level}/{int(vs[0])}", tuple(int(v) for v in vs))
        return node

    tops = []
    for rep in range(repetitions):
        tops.append(region(np.arange(num_vars), 0, True))
    return builder.summate(*tops, size=1)
