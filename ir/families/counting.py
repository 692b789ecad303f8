"""What the families on count variables (0, 1, 2, ... without an upper bound) share: the
domain, and log x! in Triton (Stirling's series after six steps of the recurrence, which keeps
its error below float32's for every count)."""

from __future__ import annotations

from .base import Family

TRITON_LOG_FACTORIAL = """\
xf = xc.to(tl.float32)
zf = xf + 7.0  # log x! = lgamma(x + 7) - log((x + 1) ... (x + 6))
izf = 1.0 / zf
log_fact = (zf - 0.5) * tl.log(zf) - zf + 0.9189385332046727 \\
    + izf * (0.08333333333 - izf * izf * (0.00277777778 - izf * izf * 0.00079365079)) \\
    - tl.log((xf + 1.0) * (xf + 2.0) * (xf + 3.0)) - tl.log((xf + 4.0) * (xf + 5.0) * (xf + 6.0))"""


class CountFamily(Family):
    """A family on a `count` variable; it has no table of values (log_table is None)."""

    is_count = True
