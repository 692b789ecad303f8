"""EM updates from accumulated flows (the M-step), as in Juice / SparsePC:

    theta_{c|n} <- (1 - a) theta + a (F_{n,c} + pc / |ch(n)|) / (F_n + pc)
    categorical: theta_k <- (1 - a) theta_k + a (F_k + pc / K + F_miss theta_k) / (F + F_miss + pc)

with step size a (1 = plain EM) and pseudocount pc (Laplace smoothing). Gaussians get weighted
moments with the pseudocount as a prior at the current values and a variance floor.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from pccompile.analysis.flows import FlowStats, encoded_flows
from pccompile.ir import family

from .regularize import Regularization


@torch.no_grad()
def em_update(
    model,
    stats: FlowStats,
    step_size: float | torch.Tensor = 1.0,
    pseudocount: float = 0.1,
    reg: Regularization | None = None,
) -> None:
    """The M-step. `step_size` may be a device scalar tensor: then nothing here waits for the
    device, and a captured training step can change it between replays. `reg` with entropy on:
    the entropy-regularised M-step (learn.regularize)."""
    pc = float(pseudocount)
    a = step_size.to(model.dtype) if isinstance(step_size, torch.Tensor) else float(step_size)
    weights = None if reg is None else reg.entropy_weights(model, stats.rows, pc)
    sum_b, input_b = weights if weights is not None else (None, [None] * len(stats.inputs))
    # -- sum weights --------------------------------------------------------------------------
    F = stats.sum_flows.to(model.dtype)
    if F.numel():
        logw = stats.log_weights if stats.log_weights is not None else model.sum_log_weights(padded=True)
        logits, logw = model.sum_logits.data, logw[: F.numel()]
        fused = sum_b is None and model.executor.em_dense_blocks(logits, logw, F, a, pc)  # a backend kernel
        model.sum_rows.em_update(logits, logw, F, a, pc, blocks=not fused, entropy=sum_b)
    # -- inputs: each family's M-step (Family.m_step) ------------------------------------------
    for part, h, s, b in zip(model.program.input_partitions, model.inputs, stats.inputs, input_b):
        if b is None and model.executor.em_inputs(part, h, s, a, pc):  # a backend kernel
            continue
        family(part.dist).m_step(part, h, s, a, pc, model.dtype, entropy=b)


def e_step(
    model, x_int: torch.Tensor, x_real: torch.Tensor | None, reg: Regularization | None = None, deferred: bool = False
) -> FlowStats:
    """The E-step of a batch: its expected counts (flows) and log-likelihood (of the softened
    data when `reg` softens). `deferred`: the statistics go straight to em_update (see
    encoded_flows)."""
    if reg is not None:
        return reg.e_step(model, x_int, x_real)
    return encoded_flows(model, x_int, x_real, deferred=deferred)


def em_step(
    model,
    x_int: torch.Tensor,
    x_real: torch.Tensor | None,
    step_size: float,
    pseudocount: float = 0.1,
    reduce: Callable[[FlowStats], FlowStats] | None = None,
    reg: Regularization | None = None,
) -> torch.Tensor:
    """One mini-batch EM step on an encoded batch (model.encode): the E-step, then the M-step.
    `reduce` sits between them and may combine the statistics of several processes (an
    all-reduce for data-parallel training) before the update; every process then applies the
    same update. Returns the batch's summed log-likelihood as a 0-d device tensor, without
    waiting for the device. On the triton backend on CUDA the step is captured as a CUDA graph
    per batch shape and replayed (pccompile.runtime.cuda_graphs); the step size is an input of the graph.
    `reg`: data softening and entropy regularisation (learn.regularize); a regularised step runs
    eagerly (it copies the marginals and a missing row to the device), not as a graph."""
    pc = float(pseudocount)

    def step_fn(xi, xr, a):
        stats = e_step(model, xi, xr, reg, deferred=reduce is None)  # updated at once, unless combined first
        if reduce is not None:
            stats = reduce(stats)
        em_update(model, stats, a, pc, reg)
        return stats.log_likelihood

    step = torch.full((), float(step_size), dtype=torch.float32, device=x_int.device)
    if model.cuda_graphs and x_int.is_cuda and reg is None:  # the regularisers copy host tables in: eager
        return model.graph_cache(("em", pc, reduce), step_fn)(x_int, x_real, step)
    return step_fn(x_int, x_real, step)


def through_knots(knots, progress: float) -> float:
    """Linear phases of equal length through `knots` (k knots: k - 1 phases)."""
    phases = len(knots) - 1
    if phases < 1:
        return float(knots[0])
    k = min(int(progress * phases), phases - 1)
    return knots[k] + (knots[k + 1] - knots[k]) * (progress * phases - k)


def three_phase_knots(start: float, end: float) -> tuple[float, ...]:
    """The released codes' ramps: start -> 100 end -> 10 end -> end, each knot at most the one
    before. For end 0.001 that is SparsePC's rounds (0.3, 0.1, 0.01, 0.001) and the HCLT
    recipe (1, 0.1, 0.01, 0.001): the middle knots are decades above the end, not a fraction
    of the start."""
    knots = [start]
    for k in (100 * end, 10 * end, end):
        knots.append(min(k, knots[-1]))
    return tuple(knots)


def _three_phase(start: float, end: float, progress: float) -> float:
    return through_knots(three_phase_knots(start, end), progress)


SCHEDULES: dict[str, Callable[[float, float, float], float]] = {
    "constant": lambda start, end, progress: start,
    "linear": lambda start, end, progress: start + (end - start) * progress,
    "cosine": lambda start, end, progress: end + 0.5 * (start - end) * (1 + math.cos(math.pi * progress)),
    "three-phase": _three_phase,
}


def step_size_at(schedule: str, start: float, end: float, progress: float, knots=None) -> float:
    """Step size after `progress` in [0, 1] of training (of a phase), by the SCHEDULES rule, or
    through explicit `knots` (linear phases of equal length) when given."""
    progress = min(max(progress, 0.0), 1.0)
    if knots:
        return through_knots(knots, progress)
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule '{schedule}'; expected {', '.join(SCHEDULES)}")
    return SCHEDULES[schedule](start, end, progress)
