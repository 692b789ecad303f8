"""Exact samples of a signed circuit's square (or of the monotone baseline), one variable at a
time: x_v is drawn from p(x_v | x_<v), which the Gram recursion gives exactly as the integral
of c^2 over the later variables with x_<v and each candidate value of x_v observed."""

from __future__ import annotations

import torch

from pccompile.ir import ArgumentError

from .circuit import SignedCircuit


def _log_unnormalised(model: SignedCircuit, x: torch.Tensor) -> torch.Tensor:
    """log of the density of the observed values of x, up to a constant shared by all rows."""
    return model.log_gram(x) if model.squared else model.signed_values(x)[0]


@torch.no_grad()
def sample(model: SignedCircuit, num: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """[num, num_vars] samples of p (float tensor of values), for circuits over discrete
    variables."""
    variables = model.circuit.variables
    real = [v.name for v in variables if v.domain.num_cats is None]
    if real:
        raise ArgumentError(
            f"sampling a signed circuit draws each variable from its exact conditional over its values; "
            f"'{real[0]}' is not discrete (sample discrete circuits, or evaluate densities on a grid)"
        )
    ref = next(iter(model.parameters()))
    x = torch.full((num, len(variables)), float("nan"), dtype=ref.dtype, device=ref.device)
    for v, var in enumerate(variables):
        k = int(var.domain.num_cats)
        trial = x.repeat_interleave(k, 0)
        trial[:, v] = torch.arange(k, dtype=x.dtype, device=x.device).repeat(num)
        logits = _log_unnormalised(model, trial).reshape(num, k)
        probs = torch.softmax(logits.nan_to_num(nan=-torch.inf), 1)
        x[:, v] = torch.multinomial(probs, 1, generator=generator)[:, 0].to(x.dtype)
    return x
