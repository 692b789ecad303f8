"""DSL templates for the structures: hclt, rat_spn, pd, hmm.

var x[64] : categorical(17)
image = [8, 8]
root = hclt(x, latents=16, data="builtin:digits")
"""

from __future__ import annotations

import numpy as np

from pccompile import builder
from pccompile.dsl.templates import Arg, template
from pccompile.ir import PCError, Region
from pccompile.ir.limits import MAX_CATEGORIES, MAX_HCLT_VARIABLES, MAX_VARIABLES, MAX_VECTOR_SIZE, check_limit

from .hclt import hclt as _hclt
from .hmm import hmm as _hmm
from .patch_hclt import patch_hclt as _patch_hclt
from .pd import pd as _pd
from .rat_spn import rat_spn as _rat_spn


def _remap(root: builder.Vec, var_ids: list[int]) -> builder.Vec:
    """Point a structure built over variables 0..n-1 at the given variable indices (inputs and
    region annotations)."""
    for v in builder.reachable(root):
        if v.kind == "input":
            v.var = var_ids[v.var]
        if v.region is not None:  # names of one-variable latents (Z[v]) follow their variable
            r = v.region
            name = f"Z[{var_ids[r.variables[0]]}]" if r.name == f"Z[{r.variables[0]}]" else r.name
            v.region = Region(name, tuple(var_ids[i] for i in r.variables))
    return root


def _vars(ctx, variables, name: str) -> tuple[list[int], list]:
    if not isinstance(variables, list) or not all(isinstance(i, int) for i in variables):
        raise ctx.error(f"{name}: the first argument must be variables (an array name such as x)")
    doms = [ctx.variables[i].domain for i in variables]
    return variables, [d.num_cats for d in doms]


def _check_size(ctx, size, name):
    if size not in (None, 1):
        raise ctx.error(f"{name} builds a whole circuit of size 1; drop the [{size}]")


LATENTS = dict(lo=1, hi=MAX_VECTOR_SIZE)


@template(
    "hclt",
    Arg("latents", "int", 16, **LATENTS),
    Arg("data", "str"),
    Arg("bins", "int", None, 2, MAX_CATEGORIES),
    Arg("pseudocount", "float", 0.1, 0, 1e6),
    Arg("max_rows", "int", 20000, 1, 10**9),
    Arg("trees", "int", 1, 1, 64),
    Arg("tree_candidates", "int", None, 1, 1000),
    Arg("leaf_sums", "bool", True, help="a sum on every tree edge (1), or the released HCLT's none on leaves (0)"),
)
def hclt_template(ctx, size, variables, latents, data, bins, pseudocount, max_rows, trees, tree_candidates, leaf_sums):
    _check_size(ctx, size, "hclt")
    ids, cats = _vars(ctx, variables, "hclt")
    if any(c is None for c in cats):
        raise ctx.error("hclt needs discrete variables")
    check_limit("hclt over", len(ids), MAX_HCLT_VARIABLES)  # mutual information is quadratic in them
    x = _template_data(ctx, data, ids, cats, "hclt")
    circuit = _hclt(
        x,
        latents,
        np.array(cats),
        pseudocount=pseudocount,
        bins=bins,
        max_rows=max_rows,
        trees=trees,
        tree_candidates=tree_candidates,
        leaf_sums=leaf_sums,
    )
    return _remap(circuit, ids)


@template(
    "patch_hclt",
    Arg("latents", "int", 16, **LATENTS),
    Arg("data", "str"),
    Arg("patch", "int", 2, 1, MAX_VARIABLES),
    Arg("bins", "int", 16, 2, MAX_CATEGORIES),
    Arg("pseudocount", "float", 0.1, 0, 1e6),
    Arg("max_rows", "int", 20000, 1, 10**9),
    Arg("leaf_sums", "bool", True),
)
def patch_hclt_template(ctx, size, variables, latents, data, patch, bins, pseudocount, max_rows, leaf_sums):
    """One latent per image patch (the LVD paper's PCs); needs `image = [H, W]`."""
    _check_size(ctx, size, "patch_hclt")
    ids, cats = _vars(ctx, variables, "patch_hclt")
    shape = ctx.meta.get("image")
    if shape is None or len(shape) != 2 or shape[0] * shape[1] != len(ids):
        raise ctx.error(f"patch_hclt needs an image = [height, width] setting covering its {len(ids)} variables")
    if any(c is None for c in cats):
        raise ctx.error("patch_hclt needs discrete variables")
    x = _template_data(ctx, data, ids, cats, "patch_hclt")
    circuit = _patch_hclt(
        x,
        (int(shape[0]), int(shape[1])),
        patch,
        latents,
        np.array(cats),
        bins=bins,
        pseudocount=pseudocount,
        max_rows=max_rows,
        leaf_sums=leaf_sums,
    )
    return _remap(circuit, ids)


def _template_data(ctx, data: str, ids, cats, name: str):
    """A template's training rows (a path beside the .pc file, or builtin:...), checked against
    the variables it covers."""
    from pccompile.io.data import check_data, load_array

    try:
        x = load_array(data if str(data).startswith("builtin:") else ctx.path(data))
        check_data(x, np.array(cats), [ctx.variables[i].name for i in ids], f"{name} data '{data}'")
    except PCError as e:
        raise ctx.error(f"{name} data: {e}") from None
    return x


@template(
    "rat_spn",
    Arg("depth", "int", 2, 1, 30),
    Arg("repetitions", "int", 2, 1, 4096),
    Arg("sums", "int", 4, **LATENTS),
    Arg("inputs", "int", 4, **LATENTS),
    Arg("seed", "int", 0, 0, 2**63 - 1),
)
def rat_spn_template(ctx, size, variables, depth, repetitions, sums, inputs, seed):
    _check_size(ctx, size, "rat_spn")
    ids, cats = _vars(ctx, variables, "rat_spn")
    return _remap(
        _rat_spn(len(ids), cats, depth=depth, repetitions=repetitions, num_sums=sums, num_inputs=inputs, seed=seed), ids
    )


@template(
    "pd", Arg("latents", "int", 4, **LATENTS), Arg("delta", "int", 2, 1, MAX_VARIABLES), Arg("shape", "shape", None)
)
def pd_template(ctx, size, variables, latents, delta, shape):
    _check_size(ctx, size, "pd")
    ids, cats = _vars(ctx, variables, "pd")
    shape = shape or ctx.meta.get("image")
    if shape is None or len(shape) != 2 or shape[0] * shape[1] != len(ids):
        raise ctx.error(f"pd needs shape=[height, width] (or an image setting) covering {len(ids)} variables")
    if len(set(cats)) != 1:
        raise ctx.error("pd needs all variables of one domain")
    return _remap(_pd(int(shape[0]), int(shape[1]), cats[0], latents=latents, delta=delta), ids)


@template("hmm", Arg("latents", "int", 8, **LATENTS), Arg("homogeneous", "bool", True))
def hmm_template(ctx, size, variables, latents, homogeneous):
    _check_size(ctx, size, "hmm")
    ids, cats = _vars(ctx, variables, "hmm")
    if len(set(cats)) != 1 or cats[0] is None:
        raise ctx.error("hmm needs discrete variables of one vocabulary")
    return _remap(_hmm(len(ids), latents, int(cats[0]), homogeneous=homogeneous), ids)
