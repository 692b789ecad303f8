"""Input families on the Triton backend: each family's code in the input kernel and the two
parameter tensors it passes. `input_fwd` is assembled from these snippets, so a new family
adds one entry here (and nothing in the emitter or the executor).

A snippet computes `lp` [BLOCK_M, BLOCK_B] from the loaded values; it sees `offs_m`, `mask_m`,
`mask` and, for discrete families, `xc` (the category, 0 where missing) or, for real ones, `xv`
(0 where missing), and the parameter pointers p0, p1."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from pccompile.ir.distributions import LOG_MIN_STD


@dataclass(frozen=True)
class TritonInput:
    code: int  # the DIST constexpr
    is_real: bool
    snippet: str
    tensors: Callable  # (the partition's parameter tensors by name, partition) -> (p0, p1)
    doc: str


def _log_binomial_coefficients(part) -> torch.Tensor:
    n = part.num_cats - 1
    return torch.tensor([math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) for k in range(n + 1)])


_LOG_SIGMOID = "tl.minimum({s}, 0.0) - tl.log(1.0 + tl.exp(-tl.abs({s})))"

TRITON_INPUTS: dict[str, TritonInput] = {
    "categorical": TritonInput(
        0,
        False,
        """\
lse = tl.load(p1 + offs_m, mask=mask_m, other=0.0)
lp = tl.load(p0 + offs_m[:, None] * K + xc, mask=mask, other=0.0) - lse[:, None]""",
        lambda p, part: (p["logits"], torch.logsumexp(p["logits"], 1)),
        "p0 = logits [M, K], p1 = their log-sum-exp per row",
    ),
    "bernoulli": TritonInput(
        1,
        False,
        """\
logit = tl.load(p0 + offs_m, mask=mask_m, other=0.0)
s = tl.where(xc == 1, logit[:, None], -logit[:, None])
lp = """
        + _LOG_SIGMOID.format(s="s")
        + "  # log sigmoid(s)",
        lambda p, part: (p["logit"], p["logit"]),
        "p0 = logit [M]",
    ),
    "gaussian": TritonInput(
        2,
        True,
        """\
mean = tl.load(p0 + offs_m, mask=mask_m, other=0.0)
log_std = tl.load(p1 + offs_m, mask=mask_m, other=0.0)
z = (xv - mean[:, None]) * tl.exp(-log_std)[:, None]
lp = -0.5 * z * z - log_std[:, None] - 0.9189385332046727  # log sqrt(2 pi)""",
        lambda p, part: (p["mean"], p["log_std"].clamp_min(LOG_MIN_STD)),  # the std floor
        "p0 = mean [M], p1 = log std [M] (floored)",
    ),
    "binomial": TritonInput(
        3,
        False,
        """\
logit = tl.load(p0 + offs_m, mask=mask_m, other=0.0)
xf = xc.to(tl.float32)
lp = tl.load(p1 + xc, mask=mask, other=0.0) + xf * ("""
        + _LOG_SIGMOID.format(s="logit[:, None]")
        + """) \\
    + (K - 1 - xf) * ("""
        + _LOG_SIGMOID.format(s="-logit[:, None]")
        + ")",
        lambda p, part: (p["logit"], _log_binomial_coefficients(part).to(p["logit"])),
        "p0 = logit [M], p1 = log C(K - 1, k) for k < K",
    ),
}


def input_kernel() -> str:
    """The source of `input_fwd`, one constexpr branch per family."""
    lines = [
        '''
@triton.jit
def input_fwd(mars, x_int, x_real, p0, p1, vars, START, M, V, B, K: tl.constexpr, DIST: tl.constexpr,
              BLOCK_M: tl.constexpr, BLOCK_B: tl.constexpr):
    """mars[START + i] = log p(x[:, vars[i]]) for the M input nodes of one partition, written in
    place (no [M, B] index or value temporaries); 0 where the value is missing (marginalised).
    x is [B, V], row-major. Per family (DIST):'''
    ]
    for name, f in TRITON_INPUTS.items():
        lines.append(f"    {f.code}, {name}: {f.doc}.")
    lines.append('    """')
    lines.append("    offs_m, offs_b, mask_m, mask = row_tile(M, B, BLOCK_M, BLOCK_B)")
    lines.append("    v = tl.load(vars + offs_m, mask=mask_m, other=0)")
    for k, (name, f) in enumerate(TRITON_INPUTS.items()):
        lines.append(f"    {'if' if k == 0 else 'elif'} DIST == {f.code}:  # {name}")
        if f.is_real:
            lines += [
                "        xv = tl.load(x_real + offs_b[None, :] * V + v[:, None], mask=mask, other=0.0)",
                "        miss = xv != xv",
                "        xv = tl.where(miss, 0.0, xv)",
            ]
        else:
            lines += [
                "        xv = tl.load(x_int + offs_b[None, :] * V + v[:, None], mask=mask, other=0)",
                "        miss = xv < 0",
                "        xc = tl.maximum(xv, 0)",
            ]
        lines += ["        " + ln for ln in f.snippet.splitlines()]
    lines.append(
        "    tl.store(mars + (START + offs_m)[:, None] * B + offs_b[None, :], tl.where(miss, 0.0, lp), mask=mask)"
    )
    return "\n".join(lines) + "\n"
