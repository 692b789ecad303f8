"""Data loading: .npy, .npz, the binary density-estimation CSV (.data / .data.gz) and plain text.

Every loader returns a 2-D numpy array [rows, variables]; images are flattened. `check_data`
validates an array against a circuit's variables with errors naming variable, row and value.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from pccompile.ir import ArgumentError, DataError

from ..runtime.batch import encode_batch, numeric_array


def load_array(path: str | Path, key: str | None = None) -> np.ndarray:
    """Rows x variables from a file, or from a bundled dataset named `builtin:NAME[:SPLIT]`.

    A file that cannot be read as numbers (missing, a directory, empty, truncated, corrupt,
    strings, complex values) is a DataError naming the file and what was wrong."""
    if str(path).startswith("builtin:"):
        from pccompile.datasets import load_builtin

        return load_builtin(str(path))
    path = Path(path)
    if not path.exists():
        raise ArgumentError(f"data file '{path}' does not exist")
    if path.is_dir():
        raise DataError(f"data path '{path}' is a directory; expected a .npy, .npz, .data, .csv or .txt file")
    if path.stat().st_size == 0:
        raise DataError(f"data file '{path}' is empty (0 bytes)")
    try:
        arr = _read(path, key)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, UnicodeError, KeyError) as e:
        why = str(e) or type(e).__name__
        raise DataError(
            f"cannot read '{path}': {why[:300]} (is the file complete and of the format its name says?)"
        ) from None
    return as_rows(arr, f"data file '{path}'")


def _read(path: Path, key: str | None) -> np.ndarray:
    name = path.name.lower()
    if name.endswith(".npy"):
        return np.load(path, allow_pickle=False)
    if name.endswith(".npz"):
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.keys())
            if not keys:
                raise DataError(f"'{path}' holds no arrays")
            k = key or next((c for c in ("x", "X", "data", "images", "train") if c in keys), keys[0])
            if k not in keys:
                raise ArgumentError(f"'{path}' has no array '{k}'; it holds {', '.join(keys)}")
            return z[k]
    if name.endswith((".data", ".data.gz", ".csv", ".csv.gz")):
        return np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
    if name.endswith((".txt", ".txt.gz")):
        return np.loadtxt(path, dtype=np.float64, ndmin=2)
    raise ArgumentError(f"unknown data format '{path.name}'; expected .npy, .npz, .data, .csv or .txt")


def as_rows(arr, source: str = "data") -> np.ndarray:
    """A 2-D numeric array [rows, variables]: images flattened, integral floats as int64, booleans
    as 0/1; strings, objects and complex numbers refused."""
    arr = numeric_array(arr, source)
    if arr.dtype.kind == "b":
        arr = arr.astype(np.int64)
    if arr.dtype.kind == "u" and arr.dtype.itemsize == 8:
        if arr.size and arr.max() > np.iinfo(np.int64).max:
            raise DataError(f"{source} holds the value {arr.max()}, beyond any category")
    if arr.ndim == 0:
        raise DataError(f"{source} holds a single number; expected rows of values")
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim > 2:
        arr = arr.reshape(arr.shape[0], -1)
    if arr.dtype.kind == "f" and np.all(np.isnan(arr) | (arr == np.round(arr))):
        if not np.isnan(arr).any() and not np.isinf(arr).any():
            arr = arr.astype(np.int64)
    return arr


def check_data(x: np.ndarray, var_cats: np.ndarray, var_names, source: str = "data", chunk: int = 65536) -> None:
    """Raise DataError for the first value outside its variable's domain, checked with the same
    rule the model applies to every batch (pccompile.runtime.batch.encode_batch), chunk by chunk."""
    x = numeric_array(x, source)
    if x.ndim != 2 or x.shape[1] != len(var_cats):
        raise DataError(f"{source} has shape {x.shape}; the circuit expects [rows, {len(var_cats)}]")
    if x.shape[0] == 0:
        raise DataError(f"{source} has no rows")
    for start in range(0, x.shape[0], chunk):
        try:
            encode_batch(x[start : start + chunk], var_cats, tuple(var_names), row_offset=start)
        except DataError as e:
            raise DataError(f"{source}: {e}") from None
