"""The digits demo's plateau, before and after the categorical-input initialisation change.

Trains `pcc demo`'s configuration (HCLT 32 over the bundled 8x8 digits, 40 mini-batch EM epochs
of batch 64, step 0.2 -> 0.02, one full-batch epoch) with categorical inputs drawn the old way
(probabilities proportional to U(0.6, 1.4)) and the new way (logits -k U(0, 1), k =
ir.distributions.CATEGORICAL_INIT_SPREAD), for two seeds, and plots the training LL per epoch:

    python bench/init_plateau.py            # writes bench/init_plateau.png and prints a table
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pccompile.ir.distributions as dist

import pccompile as pc
import pccompile.runtime.params as params
from pccompile.datasets import load_builtin
from pccompile.learn import TrainConfig, Trainer

SPEC = 'var px[64] : categorical(17)\nroot = hclt(px, latents=32, data="builtin:digits")\n'


@contextlib.contextmanager
def old_init():
    """Categorical inputs drawn proportional to U(0.6, 1.4), as before the change."""
    keep = dist.Categorical.random_params, params._Logits.draw

    def random_params(self, n, rng):
        p = rng.random((n, self.num_cats), dtype=np.float32) * np.float32(0.8) + np.float32(0.6)
        return {"probs": p / p.sum(1, keepdims=True)}

    def draw(self, h, sl, gen):
        h.logits[sl].uniform_(0.6, 1.4, generator=gen).log_()

    dist.Categorical.random_params, params._Logits.draw = random_params, draw
    try:
        yield
    finally:
        dist.Categorical.random_params, params._Logits.draw = keep


def curve(seed: int):
    train, valid = load_builtin("builtin:digits"), load_builtin("builtin:digits:valid")
    model = pc.compile(pc.parse(SPEC), seed=seed)
    cfg = TrainConfig(
        epochs=40, batch_size=64, step_size=0.2, step_size_end=0.02, schedule="linear", seed=seed, finish_epochs=1
    )
    return Trainer(model, cfg, train, valid).run()


def main():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {}
    for label, ctx in (("before: U(0.6, 1.4)", old_init), (f"after: -{dist.CATEGORICAL_INIT_SPREAD:g} U(0, 1)", None)):
        for seed in (0, 1):
            with ctx() if ctx else contextlib.nullcontext():
                runs[(label, seed)] = curve(seed)
    fig, ax = plt.subplots(figsize=(7, 4))
    for (label, seed), hist in runs.items():
        style = "--" if label.startswith("before") else "-"
        ax.plot([r.epoch for r in hist], [r.train_ll for r in hist], style, label=f"{label}, seed {seed}")
    ax.set(xlabel="epoch", ylabel="train LL (epoch average)", title="digits HCLT 32: categorical input init")
    ax.set_ylim(-115, -80)
    ax.legend()
    fig.tight_layout()
    out = Path(__file__).with_name("init_plateau.png")
    fig.savefig(out, dpi=110)
    print("| init | seed | train LL, epochs 2-6 | best valid LL (epoch) |\n|---|---:|---|---:|")
    for (label, seed), hist in runs.items():
        best = max(hist, key=lambda r: r.valid_ll)
        early = " ".join(f"{r.train_ll:.1f}" for r in hist[1:6])
        print(f"| {label} | {seed} | {early} | {best.valid_ll:.2f} ({best.epoch}) |")
    print(f"plot: {out}")


if __name__ == "__main__":
    main()
