"""HCLT: hidden Chow-Liu trees (Liu & Van den Broeck), the structure both seed papers train.

Every variable v of the Chow-Liu tree gets a latent Z_v with `latents` states: an input vector
(p(x_v | Z_v = j)) times, for each tree child c, a sum vector P(subtree_c | Z_v = i) =
sum_j theta_ij [input_c x messages of c's children](j). The root mixes its latent.

`leaf_sums=False` is the released HCLT (PyJuice's `HCLT`, Juice's `hclt`): a leaf of the tree
gets no latent of its own, its input vector goes straight into its parent's product (row i is
p(x_leaf | Z_parent = i)), so an inner node has one h x h sum and the circuit (inner nodes - 1)
x h^2 + h sum weights; ours puts an h x h sum on every tree edge, leaves included.

With `trees=T > 1` the circuit is a mixture of T HCLTs over different spanning trees (picked
from the heaviest in mutual information), one root sum over all their root latents: the
"mixture of HCLTs" of Liu & Van den Broeck's regularisation paper.
"""

from __future__ import annotations

import numpy as np

from pccompile import builder
from pccompile.ir import ArgumentError, Region

from .chow_liu import chow_liu_tree, chow_liu_trees


def hclt_from_tree(
    parent: np.ndarray,
    num_cats,
    latents: int,
    variables: list[int] | None = None,
    binary_as_bernoulli: bool = True,
    leaf_sums: bool = True,
) -> builder.Vec:
    """HCLT over a given rooted tree (`parent[v]` = parent index in 0..V-1, -1 at the root)."""
    root = _root_latent(parent, num_cats, latents, variables, binary_as_bernoulli, leaf_sums)
    return builder.summate(root, size=1)


def hclt_mixture(
    parents: list[np.ndarray],
    num_cats,
    latents: int,
    variables: list[int] | None = None,
    binary_as_bernoulli: bool = True,
    leaf_sums: bool = True,
) -> builder.Vec:
    """A mixture of HCLTs, one per rooted tree: one root sum over every tree's root latent (each
    tree has inputs and sums of its own). One tree gives exactly `hclt_from_tree`."""
    roots = [_root_latent(p, num_cats, latents, variables, binary_as_bernoulli, leaf_sums) for p in parents]
    return builder.summate(*roots, size=1)


def _root_latent(parent, num_cats, latents, variables, binary_as_bernoulli, leaf_sums=True) -> builder.Vec:
    """The vector of the root's latent states: the root's input times its children's messages."""
    V = len(parent)
    cats = np.broadcast_to(np.asarray(num_cats), (V,)).astype(int)
    var_ids = list(range(V)) if variables is None else list(variables)

    def own(v: int) -> tuple[builder.Vec, Region]:
        vec = builder.input_vector(var_ids[v], latents, int(cats[v]), bernoulli=binary_as_bernoulli)
        return vec, Region(f"Z[{var_ids[v]}]", (var_ids[v],))

    return tree_latent(parent, latents, own, leaf_sums)


def tree_latent(parent, latents: int, own, leaf_sums: bool = True) -> builder.Vec:
    """The root latent of an HCLT over a rooted tree whose node v contributes `own(v)`: (its
    vector of `latents` rows, the Region of Z_v): one variable's input, or a patch's product of
    pixel inputs. Each node's latent is own(v) times its children's messages."""
    V = len(parent)
    kids: list[list[int]] = [[] for _ in range(V)]
    roots = [v for v in range(V) if parent[v] < 0]
    if len(roots) != 1:
        raise ArgumentError(f"the tree must have exactly one root, found {len(roots)}")
    for v in range(V):
        if parent[v] >= 0:
            kids[parent[v]].append(v)
    order, stack = [], [roots[0]]
    while stack:
        u = stack.pop()
        order.append(u)
        stack.extend(kids[u])
    if len(order) != V:
        raise ArgumentError("the parent array does not describe a tree over all variables")
    latent_of: dict[int, builder.Vec] = {}
    for v in reversed(order):  # children before parents
        leaf, region = own(v)
        # a released-shape leaf has no latent: its input's rows are its parent's states
        msgs = [builder.summate(latent_of[c], size=latents) if leaf_sums or kids[c] else latent_of[c] for c in kids[v]]
        latent_of[v] = builder.multiply(leaf, *msgs) if msgs else leaf
        if leaf_sums or kids[v] or parent[v] < 0:
            latent_of[v].region = region  # rows: the states of Z_v
    return latent_of[roots[0]]


def hclt(
    data: np.ndarray,
    latents: int = 16,
    num_cats=None,
    *,
    pseudocount: float = 0.1,
    max_rows: int | None = 20000,
    bins: int | None = None,
    binary_as_bernoulli: bool = True,
    variables: list[int] | None = None,
    trees: int = 1,
    tree_candidates: int | None = None,
    leaf_sums: bool = True,
) -> builder.Vec:
    """HCLT learned from `data` [N, V] (discrete). `bins` coarsens categories for the MI estimate
    (e.g. 16 for 256-level pixels, as the released code does with x // 16). `trees > 1`: a
    mixture over that many spanning trees taken at even intervals from the `tree_candidates`
    (default 5 x trees) heaviest in mutual information."""
    data = np.asarray(data)
    if data.ndim != 2:
        raise ArgumentError(f"hclt data must be [rows, variables], got shape {data.shape}")
    if data.shape[0] == 0 or data.shape[1] < 1:
        raise ArgumentError(f"hclt data must have rows and columns, got shape {data.shape}")
    if data.dtype.kind not in "biu":
        raise ArgumentError(f"hclt data must be integer categories, got {data.dtype}")
    if trees < 1:
        raise ArgumentError(f"hclt needs trees >= 1, got {trees}")
    if tree_candidates is not None and tree_candidates < trees:
        raise ArgumentError(f"hclt needs tree_candidates >= trees, got {tree_candidates} < {trees}")
    if latents < 1 or (max_rows is not None and max_rows < 1) or (bins is not None and bins < 2):
        raise ArgumentError(
            f"hclt needs latents >= 1, max_rows >= 1 and bins >= 2; got latents={latents}, "
            f"max_rows={max_rows}, bins={bins}"
        )
    if not (np.isfinite(pseudocount) and pseudocount >= 0):
        raise ArgumentError(f"hclt needs a finite pseudocount >= 0, got {pseudocount}")
    if num_cats is None:
        num_cats = int(data.max()) + 1
    cats = np.broadcast_to(np.asarray(num_cats), (data.shape[1],)).astype(int)
    bad = (data < -1) | (data >= cats)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ArgumentError(
            f"hclt data has value {int(data[r, c])} in row {r}, column {c}; "
            f"expected 0..{int(cats[c]) - 1} or -1 for missing"
        )
    x, mi_cats = data, cats
    if bins is not None:
        step = np.maximum(1, -(-cats // bins))
        x, mi_cats = np.where(data >= 0, data // step, -1), -(-cats // step)
    if trees == 1:
        _, parent = chow_liu_tree(x, mi_cats, pseudocount, max_rows)
        return hclt_from_tree(parent, cats, latents, variables, binary_as_bernoulli, leaf_sums)
    candidates = 5 * trees if tree_candidates is None else tree_candidates
    parents = chow_liu_trees(x, mi_cats, trees, candidates, pseudocount, max_rows)
    return hclt_mixture(parents, cats, latents, variables, binary_as_bernoulli, leaf_sums)
