"""What an input family is made of: the parts every layer asks of it.

A family is one class, in one module of this package, registered with `@register`. Its parts:

- IR (numpy; `ir.distributions.Distribution`): the variables it fits, its parameters (names,
  shapes, random draws, checks), the networkx form;
- the module's tensors (`runtime_*`): unconstrained arrays per input partition, converted from
  and to the IR's parameters, drawn when the source gave none;
- inference on the torch backend: `log_probs`, `log_table` (families over K values), `mode`,
  `sample`;
- learning: `stats` (the E-step's sufficient statistics of a partition's flows) and `m_step`;
  `softened` families also give `probs` (learn.regularize softens their evidence);
- the Triton input kernel's snippet (`triton_snippet`, `triton_doc`, `triton_tensors`); its
  DIST code is the family's place in the registry.

Kernel parts receive the partition (`part.num_cats`, `part.size`, ...), never the instance's
own fields: the registry holds one prototype per family for them. Missing values (x = -1 for
discrete variables, NaN for real ones) give log-probability 0, which marginalises the variable;
`observed` handles that for every family alike.
"""

from __future__ import annotations

from typing import ClassVar

from ..distributions import Distribution
from .lazy import torch
from .registry import family


class Family(Distribution):
    """An input family: its IR description (inherited) and its kernel parts (below). A part left
    as the base's raises NotImplementedError; `tests/test_families.py` checks that every
    registered family gives each one."""

    softened: ClassVar[bool] = False  # learn.regularize softens its evidence (finite values, `probs`)
    support: ClassVar[tuple[float, float]] = (float("-inf"), float("inf"))
    """Where a real family has density; a value outside is refused in the data, naming it."""

    # -- the module's tensors ----------------------------------------------------------------
    def runtime_empty(self, part, dtype) -> dict:
        """Named zero arrays (numpy, `dtype`) for the partition's unconstrained parameters."""
        raise NotImplementedError

    def runtime_from_ir(self, p: dict, dst: dict, sl: slice, dtype) -> None:
        """Write one node's IR parameters `p` into rows `sl` of the arrays `dst`."""
        raise NotImplementedError

    def runtime_to_ir(self, src: dict, sl: slice) -> dict:
        """Rows `sl` of the arrays `src` as the IR's parameters (float32)."""
        raise NotImplementedError

    def runtime_draw(self, h, sl: slice, gen) -> None:
        """Draw rows `sl` of the partition's tensors `h` in place (the `init` pass's law)."""
        raise NotImplementedError

    # -- inference (torch backend) ---------------------------------------------------------
    def log_probs(self, part, p: dict, xv):
        """[m, B] log-probabilities of values xv [m, B] (missing entries already set to 0)."""
        raise NotImplementedError

    def log_table(self, part, p: dict):
        """[m, K] log-probability of every value, for a family over K values (None otherwise):
        then a batch's log-probabilities are one gather."""
        return None

    def mode(self, part, p: dict):
        """([m] most probable value, [m] its log-probability)."""
        raise NotImplementedError

    def sample(self, part, p: dict, rows, gen):
        """One draw from each selected row's distribution ([n] rows of the partition)."""
        raise NotImplementedError

    # -- learning --------------------------------------------------------------------------
    def stats(self, part, p, vars_t, f, x_int, x_real) -> dict:
        """Reduce the partition's flows f [m, B] to its sufficient statistics (sums over the
        batch, so that batches add). `p`: the partition's current tensors, for the families whose
        M-step takes statistics at the current parameters (a generalised EM step)."""
        raise NotImplementedError

    def m_step(self, part, h, s: dict, a, pc: float, dtype, entropy=None) -> None:
        """Write the new parameters into `h` in place. Step size a (1 = plain EM) mixes old and
        new; the pseudocount pc smooths; flow on rows whose value is missing counts at the
        current parameters. `entropy` [m]: the weight of each row's entropy in an
        entropy-regularised M-step (softened families only)."""
        raise NotImplementedError

    def probs(self, h):
        """[m, K] probabilities of a softened family's values."""
        raise NotImplementedError

    # -- the Triton input kernel -----------------------------------------------------------
    triton_snippet: ClassVar[str] = ""
    """Computes `lp` [BLOCK_M, BLOCK_B]; sees `offs_m`, `mask_m`, `mask`, K, the parameter
    pointers p0 and p1, and `xc` (the value, 0 where missing) or, for real families, `xv`."""
    triton_doc: ClassVar[str] = ""

    def triton_tensors(self, p: dict, part):
        """(p0, p1): the two parameter tensors the snippet reads."""
        raise NotImplementedError


def observed(part, vars_t, x_int, x_real):
    """([m, B] values of the partition's variables with missing entries set to 0, [m, B] missing)."""
    if family(part.dist).is_real:
        xv = x_real[:, vars_t].T
        miss = torch.isnan(xv)
        return torch.where(miss, torch.zeros_like(xv), xv), miss
    xv = x_int[:, vars_t].T
    miss = xv < 0
    return xv.clamp(min=0), miss


def observed_flows(part, vars_t, f, x_int, x_real):
    """(values [m, B], 0 where missing; the flows f [m, B] of the observed entries, 0 where
    missing). The flow of missing entries is f - observed flows."""
    xv, miss = observed(part, vars_t, x_int, x_real)
    return xv, torch.where(miss, torch.zeros_like(f), f)


def variable_codes(part, vars_t, x_int):
    """[V, B] the value of each run's variable (rows in runs of `part.run_length`), a missing
    value coded as K = part.num_cats: one past the family's values."""
    xv = x_int[:, vars_t[:: part.run_length]].T
    return torch.where(xv < 0, part.num_cats, xv)


def mix(old, new, a):
    """The step-size mix of an M-step: (1 - a) old + a new."""
    return (1 - a) * old + a * new


LOG_SIGMOID = "tl.minimum({s}, 0.0) - tl.log(1.0 + tl.exp(-tl.abs({s})))"
"""log sigmoid(s) in Triton, stable for either sign."""
