"""DSL templates for the structures: hclt, rat_spn, pd, hmm.

    var x[64] : categorical(17)
    image = [8, 8]
    root = hclt(x, latents=16, data="builtin:digits")
"""

from __future__ import annotations

import numpy as np

from pccompile import builder
from pccompile.dsl.templates import template
from pccompile.ir import PCError

from .hclt import hclt as _hclt
from .hmm import hmm as _hmm
from .pd import pd as _pd
from .rat_spn import rat_spn as _rat_spn


def _remap(root: builder.Vec, var_ids: list[int]) -> builder.Vec:
    """Point a structure built over variables 0..n-1 at the given variable indices."""
    seen, stack = set(), [root]
    while stack:
        v = stack.pop()
        if id(v) in seen:
            continue
        seen.add(id(v))
        if v.kind == "input":
            v.var = var_ids[v.var]
        stack.extend(v.children)
        if v.tie is not None:
            stack.append(v.tie)
    return root


def _vars(ctx, variables, name: str) -> tuple[list[int], list]:
    if not isinstance(variables, list) or not all(isinstance(i, int) for i in variables):
        raise ctx.error(f"{name}: the first argument must be variables (an array name such as x)")
    doms = [ctx.variables[i].domain for i in variables]
    return variables, [d.num_cats for d in doms]


def _check_size(ctx, size, name):
    if size not in (None, 1):
        raise ctx.error(f"{name} builds a whole circuit of size 1; drop the [{size}]")


@template("hclt")
def hclt_template(ctx, size, variables, latents=16, data=None, bins=None, pseudocount=0.1, max_rows=20000):
    _check_size(ctx, size, "hclt")
    ids, cats = _vars(ctx, variables, "hclt")
    if any(c is None for c in cats):
        raise ctx.error("hclt needs discrete variables")
    if data is None:
        raise ctx.error('hclt needs data="FILE" (or "builtin:digits") to learn its Chow-Liu tree')
    from pccompile.data import load_array
    try:
        x = load_array(data if str(data).startswith("builtin:") else ctx.path(data))
    except PCError as e:
        raise ctx.error(f"hclt data: {e}") from None
    if x.shape[1] != len(ids):
        raise ctx.error(f"hclt data has {x.shape[1]} columns for {len(ids)} variables")
    return _remap(_hclt(x, int(latents), np.array(cats), pseudocount=float(pseudocount),
                        bins=None if bins is None else int(bins), max_rows=int(max_rows)), ids)


@template("rat_spn")
def rat_spn_template(ctx, size, variables, depth=2, repetitions=2, sums=4, inputs=4, seed=0):
    _check_size(ctx, size, "rat_spn")
    ids, cats = _vars(ctx, variables, "rat_spn")
    try:
        root = _rat_spn(len(ids), cats, depth=int(depth), repetitions=int(repetitions), num_sums=int(sums),
                        num_inputs=int(inputs), seed=int(seed))
    except PCError as e:
        raise ctx.error(str(e)) from None
    return _remap(root, ids)


@template("pd")
def pd_template(ctx, size, variables, latents=4, delta=2, shape=None):
    _check_size(ctx, size, "pd")
    ids, cats = _vars(ctx, variables, "pd")
    shape = shape or ctx._c.meta.get("image")
    if shape is None or len(shape) != 2 or shape[0] * shape[1] != len(ids):
        raise ctx.error(f"pd needs shape=[height, width] (or an image setting) covering {len(ids)} variables")
    if len(set(cats)) != 1:
        raise ctx.error("pd needs all variables of one domain")
    return _remap(_pd(int(shape[0]), int(shape[1]), cats[0], latents=int(latents), delta=int(delta)), ids)


@template("hmm")
def hmm_template(ctx, size, variables, latents=8, homogeneous=1):
    _check_size(ctx, size, "hmm")
    ids, cats = _vars(ctx, variables, "hmm")
    if len(set(cats)) != 1 or cats[0] is None:
        raise ctx.error("hmm needs discrete variables of one vocabulary")
    return _remap(_hmm(len(ids), int(latents), int(cats[0]), homogeneous=bool(homogeneous)), ids)
