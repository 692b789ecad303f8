"""`prune`: remove sum edges by circuit flow (EFLOW), at random (ERAND) or by weight (EPARAM), as
in "Sparse Probabilistic Circuits via Pruning and Growing" (Dang, Liu, Van den Broeck, 2022).

Candidates are the kept edges of sum vectors with more than one child column; tied sums share
their source's edges (their flows are added into the source's by the analysis) and are pruned
alike. The lowest `fraction` of candidates by score go (or those scoring under `threshold`),
globally or per node row (`scope`), edge by edge or in whole tiles of `block` x `block`
(`granularity=block`, scored by their mean: the matrix-unit tiles the kernels skip). Every row keeps at least one edge, its largest weight;
weights are renormalised; child vectors no sum reads any more are dropped, and with them every
node no longer reachable; then `trim` removes every row nothing reads and `collapse` folds chains. Flow scores come from data through the pass context
(`analyses["edge_flows"]`: {sum node id: [size, K]}), never from the circuit itself.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Literal

import numpy as np
from pccompile.ir import ArgumentError, Circuit, SumNode
from pccompile.ir.limits import MAX_VECTOR_SIZE
from pccompile.ir.options import Fraction, NonNegative, Range, Seed

from .base import Pass, PassContext, register
from .normalize import Collapse
from .trim import Trim


@register
@dataclasses.dataclass(frozen=True)
class Prune(Pass):
    """Remove the lowest-scoring sum edges (see the module docstring)."""

    name = "prune"
    fraction: Fraction = 0.5
    threshold: NonNegative | None = None  # remove edges scoring below it instead of a fraction
    criterion: Literal["flow", "random", "magnitude"] = "flow"
    scope: Literal["global", "node"] = "global"
    granularity: Literal["edge", "block"] = "edge"  # block: whole block x block tiles, the matrix-unit tiles
    block: Annotated[int, Range(1, MAX_VECTOR_SIZE)] = 16
    seed: Seed = 0
    # then remove every row nothing reads (exact; the packer, not the circuit, pads to tiles), so
    # dead rows neither count as parameters nor take part of the next round's pruning quota
    trim: bool = True

    @property
    def needs(self) -> tuple[str, ...]:
        return ("edge_flows",) if self.criterion == "flow" else ()

    def run(self, circuit: Circuit, ctx: PassContext | None = None) -> Circuit:
        ctx = ctx or PassContext()
        owners = [
            n for n in circuit.nodes.values() if isinstance(n, SumNode) and n.tie is None and circuit.child_size(n) > 1
        ]
        for n in owners:
            if n.id not in circuit.params:
                raise ArgumentError(f"pass 'prune' needs the weights of node '{n.name}'; run 'init' first")
        scores = self._scores(circuit, owners, ctx)
        keep = self._keep(circuit, owners, scores)
        return _apply(circuit, keep, self.trim)

    def _scores(self, circuit: Circuit, owners, ctx: PassContext) -> dict[int, np.ndarray]:
        if self.criterion == "flow":
            flows = ctx.require("edge_flows", self.name)
            missing = [n.name for n in owners if n.id not in flows]
            if missing:
                raise ArgumentError(f"pass 'prune': the edge flows do not cover node '{missing[0]}'")
            return {n.id: np.asarray(flows[n.id], np.float64) for n in owners}
        if self.criterion == "magnitude":
            return {n.id: np.asarray(circuit.params[n.id]["weights"], np.float64) for n in owners}
        rng = np.random.default_rng(self.seed)
        return {n.id: rng.random((n.size, circuit.child_size(n))) for n in owners}

    def _keep(self, circuit: Circuit, owners, scores) -> dict[int, np.ndarray]:
        """The new mask of every candidate node: its edges minus the pruned ones, plus each row's
        largest weight."""
        masks = {n.id: circuit.edge_mask(n) for n in owners}
        if self.granularity == "block":  # every edge scores its tile's mean: whole tiles go together
            scores = {k: _tile_means(scores[k], masks[k], self.block) for k in masks}
        if self.threshold is not None:
            drop = {k: masks[k] & (scores[k] < self.threshold) for k in masks}
        elif self.scope == "global":
            flat = np.concatenate([scores[k][masks[k]] for k in masks]) if masks else np.zeros(0)
            count = int(np.floor(self.fraction * flat.size))
            cut = np.partition(flat, count - 1)[count - 1] if count else -np.inf
            drop = {k: masks[k] & (scores[k] <= cut) for k in masks}
            _trim_ties(drop, masks, scores, cut, flat, count)
        else:
            drop = {k: _per_row(masks[k], scores[k], self.fraction) for k in masks}
        keep = {}
        for n in owners:
            k = masks[n.id] & ~drop[n.id]
            if self.granularity == "block":  # a row block left empty keeps its best tile, whole
                _keep_best_tiles(k, masks[n.id], scores[n.id], self.block)
            w = np.asarray(circuit.params[n.id]["weights"])
            empty = ~k.any(1)
            best = np.argmax(np.where(masks[n.id], w, -1), axis=1)
            k[np.flatnonzero(empty), best[empty]] = True  # every row keeps its largest weight at least
            keep[n.id] = k
        return keep


def _tile_means(score: np.ndarray, mask: np.ndarray, b: int) -> np.ndarray:
    """Each entry replaced by the mean score of the kept edges of its b x b tile."""
    R, K = score.shape
    if R == 0 or K == 0:
        return score.astype(np.float64)
    rows, cols = np.arange(0, R, b), np.arange(0, K, b)  # tile starts: no padding, a tile may exceed the matrix

    def tile_sums(a):
        return np.add.reduceat(np.add.reduceat(a, rows, axis=0), cols, axis=1)

    mean = tile_sums(np.where(mask, score, 0.0)) / np.maximum(tile_sums(mask.astype(np.int64)), 1)
    return np.repeat(np.repeat(mean, np.minimum(b, R - rows), 0), np.minimum(b, K - cols), 1)


def _keep_best_tiles(keep: np.ndarray, mask: np.ndarray, tile_score: np.ndarray, b: int) -> None:
    """For every block of b rows with a row left without edges, keep its best-scoring tile."""
    for r0 in range(0, keep.shape[0], b):
        rows = slice(r0, r0 + b)
        if keep[rows].any(1).all():
            continue
        c0 = int(np.argmax(np.where(mask[rows].any(0), tile_score[r0], -np.inf))) // b * b
        keep[rows, c0 : c0 + b] |= mask[rows, c0 : c0 + b]


def _trim_ties(drop, masks, scores, cut, flat, count) -> None:
    """With scores equal to the cut, drop only as many as `count` asks for (in node order)."""
    extra = sum(int(d.sum()) for d in drop.values()) - count
    for k in drop:
        if extra <= 0:
            return
        tied = np.argwhere(drop[k] & (scores[k] == cut))
        for r, c in tied[:extra]:
            drop[k][r, c] = False
        extra -= min(extra, len(tied))


def _per_row(mask: np.ndarray, score: np.ndarray, fraction: float) -> np.ndarray:
    drop = np.zeros_like(mask)
    for r in range(mask.shape[0]):
        cols = np.flatnonzero(mask[r])
        count = int(np.floor(fraction * cols.size))
        if count:
            drop[r, cols[np.argsort(score[r, cols], kind="stable")[:count]]] = True
    return drop


def _apply(circuit: Circuit, keep: dict[int, np.ndarray], trim: bool) -> Circuit:
    """New masks and renormalised weights; children no row reads are dropped (sources and the
    sums tied to them alike), then everything no longer reachable."""
    nodes, params = dict(circuit.nodes), dict(circuit.params)
    tied: dict[int, list] = {}
    for other in circuit.nodes.values():
        if isinstance(other, SumNode) and other.tie is not None:
            tied.setdefault(circuit.param_source(other).id, []).append(other)
    for nid, mask in keep.items():
        node = circuit.nodes[nid]
        offsets = np.cumsum([0] + [circuit.nodes[c].size for c in node.children])
        used = [k for k in range(len(node.children)) if mask[:, offsets[k] : offsets[k + 1]].any()]
        if nid in tied:  # tied sums may read other child vectors: keep every column, mask only
            used = list(range(len(node.children)))
        cols = np.concatenate([np.arange(offsets[k], offsets[k + 1]) for k in used])
        m = mask[:, cols]
        w = np.where(m, np.asarray(circuit.params[nid]["weights"], np.float64)[:, cols], 0.0)
        params[nid] = {"weights": (w / w.sum(1, keepdims=True)).astype(np.float32)}
        for other in [node, *tied.get(nid, [])]:
            children = tuple(other.children[k] for k in used)
            nodes[other.id] = dataclasses.replace(other, children=children, mask=None if m.all() else m)
    pruned = circuit.replace(nodes=nodes, params=params)
    return Collapse().run(Trim().run(pruned) if trim else pruned)
