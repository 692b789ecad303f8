"""Datasets shipped inside the package, addressed as `builtin:NAME[:SPLIT]`."""

from __future__ import annotations

from importlib import resources

import numpy as np

from pccompile.ir import ArgumentError

BUILTIN = {"digits": {"shape": (8, 8), "num_cats": 17}}


def load_builtin(spec: str) -> np.ndarray:
    """`builtin:digits` (train split), `builtin:digits:valid`, `builtin:digits:test`, `builtin:digits:all`."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or parts[0] != "builtin" or parts[1] not in BUILTIN:
        raise ArgumentError(
            f"unknown built-in dataset '{spec}'; available: "
            + ", ".join(f"builtin:{n}[:train|:valid|:test]" for n in BUILTIN)
        )
    split = parts[2] if len(parts) == 3 else "train"
    with resources.files("pccompile.datasets").joinpath(f"{parts[1]}.npz").open("rb") as f:
        images = np.load(f)["images"]
    x = images.reshape(images.shape[0], -1).astype(np.int64)
    perm = np.random.default_rng(0).permutation(x.shape[0])
    n_train, n_valid = 1257, 270
    splits = {
        "train": perm[:n_train],
        "valid": perm[n_train : n_train + n_valid],
        "test": perm[n_train + n_valid :],
        "all": np.arange(x.shape[0]),
    }
    if split not in splits:
        raise ArgumentError(f"unknown split '{split}'; expected train, valid, test or all")
    return x[splits[split]]
