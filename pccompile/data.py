"""Data loading: .npy, .npz, the binary density-estimation CSV (.data / .data.gz) and plain text.

Every loader returns a 2-D numpy array [rows, variables]; images are flattened. `check_data`
validates an array against a circuit's variables with errors naming variable, row and value.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pccompile.ir import ArgumentError, DataError

from .batch import encode_batch


def load_array(path: str | Path, key: str | None = None) -> np.ndarray:
    """Rows x variables from a file, or from a bundled dataset named `builtin:NAME[:SPLIT]`."""
    if str(path).startswith("builtin:"):
        from pccompile.datasets import load_builtin
        return load_builtin(str(path))
    path = Path(path)
    if not path.exists():
        raise ArgumentError(f"data file '{path}' does not exist")
    name = path.name.lower()
    try:
        if name.endswith(".npy"):
            arr = np.load(path, allow_pickle=False)
        elif name.endswith(".npz"):
            with np.load(path, allow_pickle=False) as z:
                keys = list(z.keys())
                k = key or next((c for c in ("x", "X", "data", "images", "train") if c in keys), keys[0])
                if k not in keys:
                    raise ArgumentError(f"'{path}' has no array '{k}'; it holds {', '.join(keys)}")
                arr = z[k]
        elif name.endswith((".data", ".data.gz", ".csv", ".csv.gz")):
            arr = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
        elif name.endswith((".txt", ".txt.gz")):
            arr = np.loadtxt(path, dtype=np.float64, ndmin=2)
        else:
            raise ArgumentError(f"unknown data format '{path.name}'; expected .npy, .npz, .data, .csv or .txt")
    except ValueError as e:
        raise DataError(f"cannot read '{path}': {e}") from None
    arr = np.asarray(arr)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim > 2:
        arr = arr.reshape(arr.shape[0], -1)
    if arr.dtype.kind == "f" and np.all(np.isnan(arr) | (arr == np.round(arr))):
        if not np.isnan(arr).any():
            arr = arr.astype(np.int64)
    return arr


def check_data(x: np.ndarray, var_cats: np.ndarray, var_names, source: str = "data", chunk: int = 65536) -> None:
    """Raise DataError for the first value outside its variable's domain, checked with the same
    rule the model applies to every batch (pccompile.batch.encode_batch), chunk by chunk."""
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != len(var_cats):
        raise DataError(f"{source} has shape {x.shape}; the circuit expects [rows, {len(var_cats)}]")
    for start in range(0, x.shape[0], chunk):
        try:
            encode_batch(x[start:start + chunk], var_cats, tuple(var_names), row_offset=start)
        except DataError as e:
            raise DataError(f"{source}: {e}") from None
