"""PNG output: learning curves and sample grids (matplotlib, headless)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..analysis.metrics import bits_per_dim


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def learning_curve(history, path: str | Path, num_vars: int, title: str = "") -> None:
    plt = _plt()
    ep = [r.epoch for r in history]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)

    def bpd(ll):  # epochs without the split (a resumed run that added --valid) are gaps
        return math.nan if ll is None else bits_per_dim(ll, num_vars)

    ax.plot(ep, [bpd(r.train_ll) for r in history], "o-", label="train")
    if any(r.valid_ll is not None for r in history):
        ax.plot(ep, [bpd(r.valid_ll) for r in history], "s-", label="valid")
    if any(r.test_ll is not None for r in history):
        ax.plot(ep, [bpd(r.test_ll) for r in history], "^-", label="test")
    ax.set_xlabel("epoch")
    ax.set_ylabel("bits per dimension (lower is better)")
    ax.set_title(title or "learning curve")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _picture(sample: np.ndarray, shape, vmax: float) -> tuple[np.ndarray, dict]:
    """One sample as imshow takes it: [H, W] grey; [3, H, W] colour; other channel counts side by side."""
    if len(shape) == 2 or shape[0] == 1:
        return sample.reshape(shape[-2:]), {"cmap": "gray", "vmin": 0, "vmax": vmax}
    c, h, w = shape
    planes = sample.reshape(c, h, w)
    if c == 3:
        return np.clip(planes.transpose(1, 2, 0) / max(vmax, 1e-12), 0, 1), {}
    return planes.transpose(1, 0, 2).reshape(h, c * w), {"cmap": "gray", "vmin": 0, "vmax": vmax}


def sample_grid(samples: np.ndarray, shape, path: str | Path, max_value: float | None = None, title: str = "") -> None:
    """A grid of samples drawn as images of `shape` ([H, W] or [C, H, W])."""
    plt = _plt()
    n = samples.shape[0]
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.2, rows * 1.2 + 0.4), dpi=120, squeeze=False)
    try:  # a figure is closed even when drawing or writing fails (pyplot keeps every open one)
        vmax = max_value if max_value is not None else float(np.nanmax(samples))
        for k, ax in enumerate(axes.reshape(-1)):
            ax.axis("off")
            if k < n:
                picture, style = _picture(samples[k], shape, vmax)
                ax.imshow(picture, **style)
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)


def prune_grow_curve(rows: list[dict], path: str | Path, num_vars: int) -> None:
    """Validation (and test) bits per dimension against the round and against the parameters."""
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    rounds = [r["round"] for r in rows]
    params = [r["parameters"] for r in rows]
    for key, style in (("valid_ll", "s-"), ("test_ll", "^-")):
        if all(r[key] is not None for r in rows):
            vals = [bits_per_dim(r[key], num_vars) for r in rows]
            a.plot(rounds, vals, style, label=key.split("_")[0])
            b.plot(params, vals, style, label=key.split("_")[0])
    a.set_xlabel("round (0: dense)")
    b.set_xlabel("parameters")
    b.set_xscale("log")
    for ax in (a, b):
        ax.set_ylabel("bits per dimension")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
