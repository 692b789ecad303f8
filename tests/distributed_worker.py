"""One rank of a data-parallel run (tests/test_distributed.py starts it under torchrun's
environment variables): trains a small digits HCLT, or runs one prune-grow round on it, and on
rank 0 saves its parameters."""

import sys
import time
from pathlib import Path

import numpy as np
import torch

import pccompile as pc
from pccompile.datasets import load_builtin
from pccompile.learn import PruneGrowOptions, TrainConfig, Trainer, prune_grow
from pccompile.learn.distributed import join, leave

SPEC = 'var px[64] : categorical(17)\nimage = [8, 8]\nroot = hclt(px, latents=6, data="builtin:digits")\n'


def train(optimizer: str, group=None, epochs: int = 2):
    torch.manual_seed(0)
    model = pc.compile(SPEC, seed=5, dtype=torch.float64)
    x = load_builtin("builtin:digits")[:300]
    cfg = TrainConfig(epochs=epochs, batch_size=64, optimizer=optimizer, seed=1)
    history = Trainer(model, cfg, x, valid=x[:97], group=group).run()
    return model, history


def prune_grow_round(folder: Path, group=None):
    """A dense round and one prune-grow round of 2 epochs each, through learn.prune_grow (its
    files in `folder`, which every rank reads): the best model and the two rounds' table rows."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = pc.compile(SPEC, seed=5, dtype=torch.float64)
    x = load_builtin("builtin:digits")[:300]
    opt = PruneGrowOptions(rounds=1, epochs=2, fraction=0.5)
    cfg = TrainConfig(batch_size=64, seed=1)
    return prune_grow(model, x, x[:97], options=opt, config=cfg, out=folder / "pg.pcz", group=group)


def lvd(encoder: str, group=None, steps: int = 20, on_mae=None):
    """Latent variable distillation of the small HCLT on 301 rows (uneven shards); encoder=mae
    trains a tiny MAE (on rank 0, cached under $PCC_CACHE)."""
    from pccompile.lvd import LVDOptions, distill

    torch.manual_seed(0)
    model = pc.compile(SPEC, seed=5, dtype=torch.float64)
    x = load_builtin("builtin:digits")[:301]
    report = distill(model, x, LVDOptions(encoder=encoder, steps=steps, dim=8, rows=200), group=group, on_mae=on_mae)
    return model, report


def main():
    mode, out = sys.argv[1], Path(sys.argv[2])
    slow = mode in ("lvd-mae-slow", "lvd-mae-hang")  # MAE training far longer than the ranks' timeout
    group = join(timeout_s=3 if slow else 60)  # 3 s: above the MAE's set-up before its first step (~1 s)
    if slow:

        def hang(step, steps, loss):  # lvd-mae-hang: rank 0 stops answering at step 5
            if mode == "lvd-mae-hang" and step == 5:
                time.sleep(60)

        model, report = lvd("mae", group, steps=800 if mode == "lvd-mae-slow" else 400, on_mae=hang)
        history, rows = [], []
    elif mode == "desync":  # a hook that changes rank 1's parameters after epoch 1

        def nudge(trainer, rec):
            if group.rank == 1 and rec.epoch == 1:
                with torch.no_grad():
                    trainer.model.sum_logits[0] += 1e-6

        model = pc.compile(SPEC, seed=5, dtype=torch.float64)
        x = load_builtin("builtin:digits")[:300]
        Trainer(model, TrainConfig(epochs=3, batch_size=64), x, between_epochs=nudge, group=group).run()
        history, rows = [], []
    elif mode == "prune-grow":
        model, rows = prune_grow_round(out.parent / "shared", group)
        history = []
    elif mode.startswith("lvd-"):
        model, report = lvd(mode[4:], group)
        history, rows = [], []
    else:
        model, history = train(mode, group)
        rows = []
    if group.is_main or mode == "prune-grow":  # prune-grow: every rank's best model, to compare
        arrays = {k: v.detach().numpy() for k, v in model.state_dict().items()}
        arrays["train_ll"] = np.array([r.train_ll for r in history])
        arrays["valid_ll"] = np.array([r.valid_ll for r in history])
        arrays["edges"] = np.array([r["edges"] for r in rows])
        arrays["round_valid_ll"] = np.array([r["valid_ll"] for r in rows])
        np.savez(out if group.is_main else out.with_name(f"rank{group.rank}.npz"), **arrays)
    leave()


if __name__ == "__main__":
    main()
