"""What the families on count variables (0, 1, 2, ... without an upper bound) share: the
domain, and log Gamma in Triton (Stirling's series after six steps of the recurrence, which keeps
its error below float32's for every argument > 0), of which log x! is one case."""

from __future__ import annotations

from .base import Family


def triton_lgamma(out: str, y: str) -> str:
    """Triton lines that set `out` to log Gamma(y) for y > 0 (any expression of the tile)."""
    return f"""\
{out}_y = {y}
{out}_z = {out}_y + 6.0  # log Gamma(y) = log Gamma(y + 6) - log(y (y + 1) ... (y + 5))
{out}_iz = 1.0 / {out}_z
{out} = ({out}_z - 0.5) * tl.log({out}_z) - {out}_z + 0.9189385332046727 \\
    + {out}_iz * (0.08333333333 - {out}_iz * {out}_iz * (0.00277777778 - {out}_iz * {out}_iz * 0.00079365079)) \\
    - tl.log({out}_y * ({out}_y + 1.0) * ({out}_y + 2.0)) - tl.log(({out}_y + 3.0) * ({out}_y + 4.0) * ({out}_y + 5.0))"""


TRITON_LOG_FACTORIAL = "xf = xc.to(tl.float32)\n" + triton_lgamma("log_fact", "xf + 1.0")
"""Sets `xf` (the count as float) and `log_fact` = log x!."""


class CountFamily(Family):
    """A family on a `count` variable; it has no table of values (log_table is None)."""

    is_count = True
