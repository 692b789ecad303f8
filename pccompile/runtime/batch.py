"""Validation and encoding of a data batch for a Program's variables.

Discrete variables take integers 0..K-1 (count variables: any integer >= 0; `var_cats` -1) with
-1 (or NaN in a float array) for missing; real
variables take floats with NaN for missing. An explicit boolean `missing` mask adds to that.
Anything else is a DataError naming the variable, the row and the value.
"""

from __future__ import annotations

import numpy as np
import torch

from pccompile.ir import DataError, family


def numeric_array(x, source: str = "data") -> np.ndarray:
    """x as a numpy array of booleans, integers or floats; strings, objects and complex numbers
    are a DataError naming `source` (the loaders and every batch share this rule)."""
    x = np.asarray(x)
    if x.dtype.kind == "c":
        raise DataError(f"{source} holds complex numbers; expected real numbers")
    if x.dtype.kind not in "biuf":
        raise DataError(
            f"{source} holds values of type {x.dtype} ({x.dtype.kind!r}); expected numbers "
            "(integers for discrete variables)"
        )
    return x


def variable_support(program) -> tuple[np.ndarray, np.ndarray] | None:
    """([V] lowest, [V] highest value) a real variable may take: the narrowest support of the
    families that read it (an exponential input: x >= 0); None when no family restricts one."""
    lo, hi = np.full(program.num_vars, -np.inf), np.full(program.num_vars, np.inf)
    for part in program.input_partitions:
        a, b = family(part.dist).support
        v = np.asarray(part.vars)
        lo[v], hi[v] = np.maximum(lo[v], a), np.minimum(hi[v], b)
    return None if np.isneginf(lo).all() and np.isposinf(hi).all() else (lo, hi)


def encode_batch(
    x,
    var_cats: np.ndarray,
    var_names: tuple[str, ...],
    missing=None,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    row_offset: int = 0,
    support: tuple[np.ndarray, np.ndarray] | None = None,
):
    """-> (x_int [B, V] long with -1 for missing, x_real [B, V] float with NaN for missing, or None
    when the circuit has no real variables). `row_offset` is added to row numbers in errors;
    `support` (variable_support) refuses real values where their families have no density."""
    if not isinstance(x, torch.Tensor):
        x = numeric_array(x)
        if x.dtype.kind == "u" and x.dtype.itemsize == 8:
            x = x.astype(np.float64)  # torch has no uint64 arithmetic; out-of-range values stay visible
        x = torch.from_numpy(x)
    elif x.is_complex():
        raise DataError("data holds complex numbers; expected real numbers")
    if x.dtype == torch.bool:
        x = x.long()
    V = int(var_cats.shape[0])
    if x.dim() == 1 and V == x.shape[0]:
        x = x.unsqueeze(0)
    if x.dim() != 2 or x.shape[1] != V:
        raise DataError(f"data must have shape [batch, {V}] (one column per variable), got {tuple(x.shape)}")
    if device is not None:
        x = x.to(device)
    discrete = torch.as_tensor(var_cats != 0, device=x.device)
    cats = torch.as_tensor(var_cats, device=x.device)
    has_real = bool((~discrete).any())
    if missing is not None:
        missing = torch.as_tensor(missing, dtype=torch.bool, device=x.device)
        if missing.dim() == 1:
            missing = missing.unsqueeze(0).expand(x.shape[0], -1)
        if missing.shape != x.shape:
            raise DataError(f"missing mask must have shape {tuple(x.shape)} or [{V}], got {tuple(missing.shape)}")
    if x.is_floating_point():
        nan = torch.isnan(x)
        xd = torch.where(nan, torch.full_like(x, -1), x)
        frac = discrete & ((xd != torch.round(xd)) | torch.isinf(xd))
        if bool(frac.any()):
            _raise_bad(frac, x, var_names, "is not an integer category", row_offset)
        big = discrete & (xd.abs() > 2**62)  # beyond int64: would wrap around when converted
        if bool(big.any()):
            _raise_bad(big, x, var_names, "is beyond any category", row_offset)
        x_int = xd.round().long()
    else:  # integers are valid values for real variables too (they are converted below)
        x_int = x.long()
    bad = discrete & ((x_int < -1) | ((cats > 0) & (x_int >= cats)))
    if bool(bad.any()):
        b, v = (int(t) for t in bad.nonzero()[0])
        raise DataError(
            f"variable '{var_names[v]}' (column {v}) has value {x[b, v].item()} in row {b + row_offset}; "
            + (f"expected 0..{int(var_cats[v]) - 1}" if var_cats[v] > 0 else "expected a count >= 0")
            + ", or -1 for missing"
        )
    if missing is not None:
        x_int = torch.where(missing, torch.full_like(x_int, -1), x_int)
    x_int = torch.where(discrete, x_int, torch.full_like(x_int, -1))
    x_real = None
    if has_real:
        x_real = x.to(dtype)
        if missing is not None:
            x_real = torch.where(missing, torch.full_like(x_real, float("nan")), x_real)
        if bool(torch.isinf(x_real[:, ~discrete]).any()):
            _raise_bad(torch.isinf(x_real) & ~discrete, x, var_names, "is infinite", row_offset)
        if support is not None:
            lo, hi = (torch.as_tensor(s, dtype=x_real.dtype, device=x.device) for s in support)
            outside = (x_real < lo) | (x_real > hi)  # NaN (missing) compares false
            if bool(outside.any()):
                b, v = (int(t) for t in outside.nonzero()[0])
                raise DataError(
                    f"variable '{var_names[v]}' (column {v}) has value {x[b, v].item()} in row {b + row_offset}, "
                    f"outside [{float(support[0][v]):g}, {float(support[1][v]):g}] where its input families have density"
                )
    return x_int, x_real


def _raise_bad(bad: torch.Tensor, x: torch.Tensor, names, why: str, row_offset: int = 0):
    b, v = (int(t) for t in bad.nonzero()[0])
    raise DataError(
        f"variable '{names[v]}' (column {v}) has value {x[b, v].item()} in row {b + row_offset}, which {why}"
    )
