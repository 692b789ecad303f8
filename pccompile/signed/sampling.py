"""Exact samples of a signed circuit's square (or of a circuit read as its own density), one
variable at a time: x_v is drawn from p(x_v | x_<v), which the Gram recursion (or, for a
circuit read as is, one evaluation with the later variables integrated out) gives exactly as a
function of x_v. A discrete x_v is drawn from its values' probabilities; a real one by inverting
its conditional CDF, in closed form per input (Gaussian CDFs), by bisection to `tol`."""

from __future__ import annotations

import torch

from .circuit import SignedCircuit


def _log_mass(model: SignedCircuit, x: torch.Tensor, below=None) -> torch.Tensor:
    """log of the density of the observed values of x, up to a constant shared by all rows;
    `below` = (v, t): variable v integrated up to t."""
    return model.log_gram(x, below) if model.squared else model.signed_values(x, below)[0]


def _draw_discrete(model, x: torch.Tensor, v: int, k: int, generator) -> torch.Tensor:
    num = x.shape[0]
    trial = x.repeat_interleave(k, 0)
    trial[:, v] = torch.arange(k, dtype=x.dtype, device=x.device).repeat(num)
    logits = _log_mass(model, trial).reshape(num, k)
    probs = torch.softmax(logits.nan_to_num(nan=-torch.inf), 1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0].to(x.dtype)


def _bracket(model: SignedCircuit, v: int) -> tuple[float, float]:
    """An interval holding all but a negligible tail of every input over variable v."""
    lo, hi = float("inf"), -float("inf")
    for nid, rule in model.rules.items():
        if model.circuit.nodes[nid].var == v:
            a, b = rule.bracket(model.program.input_params(nid))
            lo, hi = min(lo, a), max(hi, b)
    return lo, hi


def _draw_real(model, x: torch.Tensor, v: int, generator, tol: float) -> torch.Tensor:
    num = x.shape[0]
    total = _log_mass(model, x)  # x_v still missing: its whole mass
    u = torch.rand(num, generator=generator, dtype=x.dtype).to(x.device).clamp(1e-12, 1 - 1e-12).log()
    lo_f, hi_f = _bracket(model, v)
    lo = torch.full((num,), lo_f, dtype=x.dtype, device=x.device)
    hi = torch.full((num,), hi_f, dtype=x.dtype, device=x.device)
    for _ in range(200):  # halves the bracket; float32 stops refining after about 30
        if float((hi - lo).max()) <= tol * max(1.0, hi_f - lo_f):
            break
        mid = (lo + hi) / 2
        below = _log_mass(model, x, (v, mid)) - total < u  # the CDF at mid is under the target
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    return (lo + hi) / 2


@torch.no_grad()
def sample(model: SignedCircuit, num: int, generator: torch.Generator | None = None, tol: float = 1e-7) -> torch.Tensor:
    """[num, num_vars] samples of p (float tensor of values)."""
    variables = model.circuit.variables
    ref = model.program.weights
    x = torch.full((num, len(variables)), float("nan"), dtype=ref.dtype, device=ref.device)
    for v, var in enumerate(variables):
        if var.domain.num_cats is None:
            x[:, v] = _draw_real(model, x, v, generator, tol)
        else:
            x[:, v] = _draw_discrete(model, x, v, int(var.domain.num_cats), generator)
    return x
