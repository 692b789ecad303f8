"""Queries beyond log-likelihood: conditional, MPE and sampling.

MPE is the max-product pass plus a top-down decode. It is exact on deterministic circuits (at
most one child of each sum is non-zero for any input); on other circuits it returns the standard
max-product approximation, whose assignment has log p >= the max-product value.
"""

from __future__ import annotations

import torch

from pccompile.codegen.layers.inputs import observed, partition_log_probs, partition_sample, partition_stats
from pccompile.ir import DISTRIBUTIONS, ArgumentError


def conditional(model, x, query) -> torch.Tensor:
    """log p(x[query] | observed non-query entries of x); query: bool [V] or [B, V]."""
    x_int, x_real = model.encode(x)
    q = torch.as_tensor(query, dtype=torch.bool, device=x_int.device)
    if q.dim() == 1:
        q = q.unsqueeze(0).expand_as(x_int)
    if q.shape != x_int.shape:
        raise ArgumentError(f"query must have shape [{x_int.shape[1]}] or {tuple(x_int.shape)}, got {tuple(q.shape)}")
    joint = model.log_prob_encoded(x_int, x_real)
    e_int = torch.where(q, torch.full_like(x_int, -1), x_int)
    e_real = None if x_real is None else torch.where(q, torch.full_like(x_real, float("nan")), x_real)
    return joint - model.log_prob_encoded(e_int, e_real)


def _input_params(model):
    return [dict(h.named_parameters()) for h in model.inputs]


def _fill(model, active, x_int, x_real, values_of):
    """Write, for every active input row and sample whose variable is missing, the value chosen
    by values_of(partition index, part, local rows) into the output arrays."""
    out_int = x_int.clone()
    out_real = None if x_real is None else x_real.clone()
    for pi, (part, h) in enumerate(zip(model.program.input_partitions, model.inputs)):
        act = active[part.start : part.start + part.size] > 0  # [m, B]
        r, b = act.nonzero(as_tuple=True)
        var = h.vars[r]
        real = DISTRIBUTIONS[part.dist].is_real
        miss = torch.isnan(x_real[b, var]) if real else x_int[b, var] < 0
        r, b, var = r[miss], b[miss], var[miss]
        if r.numel() == 0:
            continue
        vals = values_of(pi, part, r)
        if real:
            out_real[b, var] = vals.to(out_real.dtype)
        else:
            out_int[b, var] = vals.long()
    return out_int, out_real


def _result(model, out_int, out_real):
    if out_real is None:
        return out_int
    discrete = torch.as_tensor(model.program.var_cats != 0, device=out_int.device)
    return torch.where(discrete, out_int.to(out_real.dtype), out_real)


def _max_input_log_probs(model, x_int, x_real, params):
    """[R_in, B] input values for max-product: log p(x) where observed, the mode's log p where missing."""
    out = []
    for part, h, p in zip(model.program.input_partitions, model.inputs, params):
        lp = partition_log_probs(part, p, h.vars, x_int, x_real)
        _, miss = observed(part, h.vars, x_int, x_real)
        out.append(torch.where(miss, partition_stats(part, p)[1].unsqueeze(1).expand_as(lp), lp))
    return torch.cat(out, 0)


@torch.no_grad()
def mpe(model, x, missing=None) -> torch.Tensor:
    """Most probable completion of each row: observed entries kept, missing ones filled.
    Returns LongTensor [B, V] (float when the circuit has real variables)."""
    x_int, x_real = model.encode(x, missing)
    params = _input_params(model)
    logw = model.sum_log_weights()
    mars = model.executor.forward_max(_max_input_log_probs(model, x_int, x_real, params), logw)
    active = model.executor.decode(mars, logw)
    modes = [partition_stats(part, p)[0] for part, p in zip(model.program.input_partitions, params)]
    out_int, out_real = _fill(model, active, x_int, x_real, lambda pi, part, r: modes[pi][r])
    return _result(model, out_int, out_real)


@torch.no_grad()
def max_product_value(model, x, missing=None) -> torch.Tensor:
    """The max-product value at the root (a lower bound on log p of the MPE assignment)."""
    x_int, x_real = model.encode(x, missing)
    inputs = _max_input_log_probs(model, x_int, x_real, _input_params(model))
    return model.executor.forward_max(inputs, model.sum_log_weights())[model.program.root_row]


@torch.no_grad()
def sample(model, n: int | None = None, evidence=None, seed: int | None = None) -> torch.Tensor:
    """n samples [n, V] from p(x), or one completion per evidence row from p(x_missing | x_observed)."""
    V = model.num_vars
    if evidence is None:
        if n is None or n < 1:
            raise ArgumentError("sample needs n >= 1 or evidence rows")
        has_real = bool((model.program.var_cats == 0).any())
        evidence = torch.full((n, V), float("nan") if has_real else -1, dtype=model.dtype if has_real else torch.long)
    x_int, x_real = model.encode(evidence)
    gen = torch.Generator(device=x_int.device)
    gen.manual_seed(int(seed) if seed is not None else int(torch.randint(0, 2**62, (1,))))
    logw = model.sum_log_weights(padded=True)
    mars = model.node_values(x_int, x_real, logw, complete=True)
    active = model.executor.decode(mars, logw, sample=True, gen=gen)
    params = _input_params(model)
    out_int, out_real = _fill(
        model, active, x_int, x_real, lambda pi, part, r: partition_sample(part, params[pi], r, gen)
    )
    return _result(model, out_int, out_real)
