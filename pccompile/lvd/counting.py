"""Closed-form MLE on completed data (x, z): the counting step of latent variable distillation.

With every latent assigned, a sample's induced tree is fixed: each node vector has one active
row (its latent's state, or the state combination of an outer product), and each sum passes the
sample's flow down one edge per child vector. So the completed-data flows are hard counts, and
the MLE with pseudocount a is one M-step on them (`theta = (N[i, j] + a / K) / (N[i] + a)`, and
each input family's own update): we hand them to the same M-step EM uses (learn.em), so every
input family gets its counting rule from one place.

A sum over several child vectors (a RAT-SPN root over its repetitions, a PD region over its
splits, a mixture of HCLTs) has one choice no latent assigns: which child vector. It is counted
in expectation, its posterior under the current weights given (x, z), and the counting repeated
a few rounds (EM over that choice alone). Tied sums pool their counts: the MLE of the tied model.
"""

from __future__ import annotations

import numpy as np
import torch

from pccompile.analysis.flows import FlowStats
from pccompile.ir import ArgumentError, InputNode, ProductNode
from pccompile.ir.families import family, observed
from pccompile.learn.em import em_update

from .regions import RegionMap, region_map

CHUNK_ROWS = 4096  # samples per pass (every node vector keeps [B] rows, values and flows)
INPUT_CHUNK = 1 << 22  # entries of one dense [partition rows, B] input-flow block


class _Tables:
    """What the passes read, once per call: per sum its log-weights [size, width] (-inf off the
    mask; a tied sum reads its source's), per input vector its layout, and per outer product a
    sorted table from state combination (a mixed-radix key) to row."""

    def __init__(self, model, rmap: RegionMap):
        circuit, program = model.circuit, model.program
        flat = model.sum_log_weights().detach()
        self.logw: dict[int, torch.Tensor] = {}
        self.masks: dict[int, torch.Tensor] = {}
        for lay in program.sum_layout:
            w = torch.full((lay.size, lay.width), -torch.inf, dtype=flat.dtype, device=flat.device)
            mask = torch.ones_like(w, dtype=torch.bool) if lay.mask is None else torch.as_tensor(lay.mask).to(w.device)
            w[mask] = flat[lay.offset : lay.offset + int(mask.sum())]
            self.logw[lay.node], self.masks[lay.node] = w, mask
        self.source = {i: circuit.param_source(circuit.nodes[i]).id for i in rmap.sums}
        self.inputs = {lay.node: lay for lay in program.input_layout}
        self.params = model.input_params()
        self.latent_of = {v: lat.id for lat in rmap.latents for v in lat.vectors}
        sizes = np.array([lat.size for lat in rmap.latents], dtype=np.int64)
        self.outer: dict[int, tuple[list[int], np.ndarray, np.ndarray, np.ndarray]] = {}
        for s in rmap.sums.values():
            for kid in s.children:
                if kid.child in self.latent_of or kid.child in self.outer:
                    continue
                lats = list(kid.latents)
                radix = np.cumprod(np.concatenate([[1], sizes[lats][:-1]])).astype(np.int64)
                keys = kid.states.astype(np.int64) @ radix
                order = np.argsort(keys, kind="stable")
                self.outer[kid.child] = (lats, radix, keys[order], order)


def _check_assignments(rmap: RegionMap, z: torch.Tensor) -> None:
    if z.ndim != 2 or z.shape[1] != len(rmap.latents):
        raise ArgumentError(f"assignments must be [rows, {len(rmap.latents)} latents], got shape {tuple(z.shape)}")
    for lat in rmap.latents:
        col = z[:, lat.id]
        bad = (col < 0) | (col >= lat.size)
        if bool(bad.any()):
            raise ArgumentError(
                f"latent {lat.name} has {lat.size} states, but row {int(bad.nonzero()[0])} assigns it {int(col[bad][0])}"
            )


def _input_logp(model, t: _Tables, node: InputNode, rows: torch.Tensor, x_int, x_real) -> torch.Tensor:
    """[B] log p(x_var | the active row) of one input vector (0 where x_var is missing)."""
    lay = t.inputs[node.id]
    part = model.program.input_partitions[lay.partition]
    fam = family(part.dist)
    sl = slice(lay.start, lay.start + lay.size)
    p = {k: v[sl] for k, v in t.params[lay.partition].items()}
    xv, miss = observed(part, torch.tensor([node.var], device=rows.device), x_int, x_real)
    xv, miss = xv[0], miss[0]
    table = fam.log_table(part, p)
    if table is not None:
        lp = table[rows, xv.long()]
    else:
        lp = fam.log_probs(part, {k: v[rows] for k, v in p.items()}, xv[:, None]).squeeze(1)
    return torch.where(miss, torch.zeros_like(lp), lp)


def _product_row(t: _Tables, i: int, z: torch.Tensor) -> torch.Tensor:
    """The active row of a product: its latent's state, or for an outer product the row whose
    state combination the assignment names (-1 where no row has it)."""
    if i in t.latent_of:
        return z[:, t.latent_of[i]]
    lats, radix, keys, order = t.outer[i]
    q = z[:, lats].cpu().numpy().astype(np.int64) @ radix
    pos = np.clip(np.searchsorted(keys, q), 0, len(keys) - 1)
    return torch.as_tensor(np.where(keys[pos] == q, order[pos], -1), device=z.device)


def _upward(model, rmap, t, z, x_int, x_real, values: bool):
    """Per node vector: [B] active row (-1 where the assignment reaches none) and log-value
    there (inputs count as 1 unless `values`: only the choice posteriors need them); per sum,
    for each child vector, (column [B], log-term [B], child) of its active edge."""
    circuit = model.circuit
    row: dict[int, torch.Tensor] = {}
    val: dict[int, torch.Tensor] = {}
    edges: dict[int, list[tuple[torch.Tensor, torch.Tensor, int]]] = {}
    zeros = torch.zeros(z.shape[0], dtype=model.dtype, device=z.device)
    none = torch.full_like(zeros, -torch.inf)
    for i in circuit.reachable():
        n = circuit.nodes[i]
        if isinstance(n, InputNode):
            row[i] = z[:, rmap.inputs[i]]
            val[i] = _input_logp(model, t, n, row[i], x_int, x_real) if values else zeros
        elif isinstance(n, ProductNode):
            row[i] = _product_row(t, i, z)
            val[i] = torch.where(row[i] >= 0, sum((val[c] for c in n.children), zeros), none)
        else:
            row[i] = r = z[:, rmap.sums[i].rows]
            w = t.logw[t.source[i]]
            terms = []
            for kid in rmap.sums[i].children:
                j = row[kid.child]
                ok = j >= 0
                col = torch.where(ok, kid.offset + j, torch.zeros_like(j))
                terms.append((col, torch.where(ok, w[r, col] + val[kid.child], none), kid.child))
            edges[i] = terms
            val[i] = torch.logsumexp(torch.stack([term for _, term, _ in terms]), 0)
    return row, val, edges


def _downward(model, t, row, val, edges, counts, input_flows) -> None:
    """Push each sample's flow (1 at the root where the completed sample has probability > 0)
    down its induced tree: a sum splits it over its child vectors by their posterior (one child
    vector: all of it) and adds it to the edge counts of its parameter source."""
    circuit = model.circuit
    root = circuit.root
    flow = {root: torch.isfinite(val[root]).to(model.dtype)}
    for i in reversed(circuit.reachable()):
        f = flow.pop(i, None)
        if f is None:
            continue
        n = circuit.nodes[i]
        if isinstance(n, InputNode):
            input_flows.append((t.inputs[i], row[i], f))
        elif isinstance(n, ProductNode):
            for c in n.children:
                flow[c] = flow[c] + f if c in flow else f
        else:
            src = counts[t.source[i]]
            for col, term, child in edges[i]:
                ok = torch.isfinite(term)
                share = torch.where(ok, f * torch.exp(torch.where(ok, term - val[i], 0.0)), 0.0)
                src.index_put_((row[i], col), share, accumulate=True)
                flow[child] = flow[child] + share if child in flow else share


def _input_stats(model, input_flows, x_int, x_real) -> list[dict[str, torch.Tensor]]:
    """Each partition's sufficient statistics from the hard input flows, through the family's
    own reduction (Family.stats) on dense [rows, B] blocks built in pieces."""
    B = x_int.shape[0]
    by_part: dict[int, list] = {}
    for lay, rows, f in input_flows:
        by_part.setdefault(lay.partition, []).append((lay.start, rows, f))
    out = []
    for pi, (part, h) in enumerate(zip(model.program.input_partitions, model.inputs)):
        step = max(1, INPUT_CHUNK // max(part.size, 1))
        total = None
        for b0 in range(0, max(B, 1), step):
            b1 = min(B, b0 + step)
            dense = torch.zeros(part.size, b1 - b0, dtype=model.dtype, device=x_int.device)
            cols = torch.arange(b1 - b0, device=x_int.device)
            for start, rows, f in by_part.get(pi, []):
                dense.index_put_((start + rows[b0:b1], cols), f[b0:b1], accumulate=True)
            xr = None if x_real is None else x_real[b0:b1]
            s = family(part.dist).stats(part, dict(h.named_parameters()), h.vars, dense, x_int[b0:b1], xr)
            total = s if total is None else {k: total[k] + s[k] for k in total}
        out.append(total)
    return out


def has_choices(rmap: RegionMap) -> bool:
    """Whether some sum mixes several child vectors (a choice no latent assigns)."""
    return any(len(s.children) > 1 for s in rmap.sums.values())


@torch.no_grad()
def completed_stats(model, x, z, *, missing=None, rmap: RegionMap | None = None, chunk: int = CHUNK_ROWS) -> FlowStats:
    """The flows of completed data: x [N, V] (missing entries as for the model) with the
    latents' states z [N, latents] (rmap.latents order). Hard counts, except a choice between
    child vectors, counted by its posterior under the model's current weights. Its
    `log_likelihood` is sum log p(x, z) where choices exist, else 0 (never computed)."""
    rmap = region_map(model.circuit) if rmap is None else rmap
    z = torch.as_tensor(np.asarray(z) if not isinstance(z, torch.Tensor) else z).long().to(model.device)
    _check_assignments(rmap, z)
    x_int, x_real = model.encode(x, missing)
    if x_int.shape[0] != z.shape[0]:
        raise ArgumentError(f"{x_int.shape[0]} data rows but {z.shape[0]} rows of assignments")
    t = _Tables(model, rmap)
    values = has_choices(rmap)
    counts = {node: torch.zeros_like(w) for node, w in t.logw.items()}
    total, ll = None, torch.zeros((), dtype=torch.float64, device=model.device)
    for b0 in range(0, x_int.shape[0], chunk):
        xi, zi = x_int[b0 : b0 + chunk], z[b0 : b0 + chunk]
        xr = None if x_real is None else x_real[b0 : b0 + chunk]
        row, val, edges = _upward(model, rmap, t, zi, xi, xr, values)
        if values:
            root = val[model.circuit.root]
            ll += torch.where(torch.isfinite(root), root, 0.0).double().sum()
        flows: list = []
        _downward(model, t, row, val, edges, counts, flows)
        stats = _input_stats(model, flows, xi, xr)
        total = stats if total is None else [{k: a[k] + b[k] for k in a} for a, b in zip(total, stats)]
    if total is None:  # no rows (a data-parallel rank's empty shard): zero statistics of every shape
        total = _input_stats(model, [], x_int, x_real)
    flat = torch.zeros(model.program.num_sum_params, dtype=model.dtype, device=model.device)
    for lay in model.program.sum_layout:
        mask = t.masks[lay.node]
        flat[lay.offset : lay.offset + int(mask.sum())] = counts[lay.node][mask]
    return FlowStats(flat, total, ll, int(x_int.shape[0]))


def fit_completed(
    model,
    x,
    z,
    *,
    pseudocount: float = 0.1,
    rounds: int | None = None,
    missing=None,
    rmap: RegionMap | None = None,
    group=None,
):
    """Set the model's parameters to the closed-form MLE on (x, z) with Laplace smoothing
    `pseudocount` (in place; returns the model). `rounds` (default 1, or 5 where a sum chooses
    between child vectors): recount with the new weights, EM over those choices alone. `group`
    (learn.distributed): (x, z) are this rank's rows; the counts are all-reduced."""
    rmap = region_map(model.circuit) if rmap is None else rmap
    rounds = (5 if has_choices(rmap) else 1) if rounds is None else int(rounds)
    for _ in range(max(rounds, 1)):
        stats = completed_stats(model, x, z, missing=missing, rmap=rmap)
        if group is not None:
            stats = group.reduce_stats(stats)
        em_update(model, stats, 1.0, pseudocount)
    return model
