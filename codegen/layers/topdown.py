"""Max-product evaluation and top-down passes (MPE decoding, sampling) over a Program.

Decoding walks the layers from the root down with an `active [num_rows, B]` counter: a product
activates all its children, a sum activates one child per sample (argmax of log w + child value
for MPE, a Gumbel-max draw from w * p(child) / p(node) for sampling). In a smooth, decomposable
circuit the active input rows then cover every variable exactly once per sample.
"""

from __future__ import annotations

import torch
from pccompile.ir import ONE_ROW, ZERO_ROW

from .tensors import ProgramTensors

_CHUNK = 1 << 24  # elements of the [g, G, K, B] score tensor materialised at once


def _chunks(g: int, per: int):
    step = max(1, _CHUNK // max(per, 1))
    for a in range(0, g, step):
        yield a, min(g, a + step)


def forward_max(ex: ProgramTensors, input_logp: torch.Tensor, logw: torch.Tensor) -> torch.Tensor:
    """Max-product values: like forward_mars with max in place of sum at sum nodes."""
    B = input_logp.shape[1]
    dtype = input_logp.dtype
    mars = ex.start_mars(input_logp)
    logw_ext = ex.extend_logw(logw, dtype)
    for kind, keys in ex.layer_specs:
        for key in keys:
            rows, child, pid = ex.part(key)
            if kind == "product":
                ex.write(mars, key, ex.product(mars, child))
                continue
            g, G, K = pid.shape
            out = torch.empty(g, G, B, dtype=dtype, device=mars.device)
            for a, b in _chunks(g, G * K * B):
                scores = logw_ext[pid[a:b]].unsqueeze(-1) + mars[child[a:b]].unsqueeze(1)  # [g, G, K, B]
                out[a:b] = scores.amax(2)
            ex.write(mars, key, out.reshape(-1, B))
    return mars


def decode(
    ex: ProgramTensors,
    mars: torch.Tensor,
    logw: torch.Tensor,
    *,
    sample: bool = False,
    gen: torch.Generator | None = None,
) -> torch.Tensor:
    """Top-down selection; returns active [num_rows, B] (int) marking the chosen subcircuit."""
    B = mars.shape[1]
    dtype = mars.dtype
    active = torch.zeros(ex.num_rows, B, dtype=torch.int32, device=mars.device)
    active[ex.root_row] = 1
    logw_ext = ex.extend_logw(logw, dtype)
    for kind, keys in reversed(ex.layer_specs):
        for key in reversed(keys):
            rows, child, pid = ex.part(key)
            if kind == "product":
                a = active[rows]
                F = child.shape[1]
                active.index_add_(0, child.reshape(-1), a.unsqueeze(1).expand(-1, F, -1).reshape(-1, B))
                continue
            g, G, K = pid.shape
            act = active[rows].reshape(g, G, B) > 0
            if not bool(act.any()):
                continue
            for a, b in _chunks(g, G * K * B):
                sel = act[a:b]
                if not bool(sel.any()):
                    continue
                scores = logw_ext[pid[a:b]].unsqueeze(-1) + mars[child[a:b]].unsqueeze(1)  # [g, G, K, B]
                if sample:
                    u = torch.rand(scores.shape, generator=gen, device=scores.device, dtype=dtype).clamp_min(1e-30)
                    scores = scores - (-u.log()).log()
                choice = scores.argmax(2)  # [g, G, B]
                gi, i, bb = sel.nonzero(as_tuple=True)
                chosen = child[a:b][gi, choice[gi, i, bb]]
                active.index_put_((chosen, bb), torch.ones_like(chosen, dtype=torch.int32), accumulate=True)
    active[ZERO_ROW] = 0
    active[ONE_ROW] = 0
    return active
