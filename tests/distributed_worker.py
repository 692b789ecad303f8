"""One rank of a data-parallel run (tests/test_distributed.py starts it under torchrun's
environment variables): trains a small digits HCLT, or runs one prune-grow round on it, and on
rank 0 saves its parameters."""

import sys
from pathlib import Path

import numpy as np
import torch

import pccompile as pc
from pccompile.datasets import load_builtin
from pccompile.learn import PruneGrow, PruneGrowOptions, TrainConfig, Trainer
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
    """A dense round and one prune-grow round of 2 epochs each (its files in `folder`): the
    model at the end (the pruned and grown one, trained) and the two rounds' table rows."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = pc.compile(SPEC, seed=5, dtype=torch.float64)
    x = load_builtin("builtin:digits")[:300]
    opt = PruneGrowOptions(rounds=1, epochs=2, fraction=0.5)
    cfg = TrainConfig(epochs=opt.total_epochs, phase_epochs=opt.epochs, batch_size=64, seed=1)
    hook = PruneGrow(opt, x, folder / "pg.pcz", group=group)
    trainer = Trainer(model, cfg, x, valid=x[:97], between_epochs=hook, group=group)
    hook.begin(trainer)
    history = trainer.run()
    return trainer.model, history, hook.rows


def lvd(encoder: str, group=None):
    """Latent variable distillation of the small HCLT on 301 rows (uneven shards); encoder=mae
    trains a tiny MAE (on rank 0, cached under $PCC_CACHE)."""
    from pccompile.lvd import LVDOptions, distill

    torch.manual_seed(0)
    model = pc.compile(SPEC, seed=5, dtype=torch.float64)
    x = load_builtin("builtin:digits")[:301]
    report = distill(model, x, LVDOptions(encoder=encoder, steps=20, dim=8, rows=200), group=group)
    return model, report


def main():
    mode, out = sys.argv[1], Path(sys.argv[2])
    group = join(timeout_s=60)
    if mode == "prune-grow":
        model, history, rows = prune_grow_round(out.parent / f"rank{group.rank}", group)
    elif mode.startswith("lvd-"):
        model, report = lvd(mode[4:], group)
        history, rows = [], []
    else:
        model, history = train(mode, group)
        rows = []
    if group.is_main:
        arrays = {k: v.detach().numpy() for k, v in model.state_dict().items()}
        arrays["train_ll"] = np.array([r.train_ll for r in history])
        arrays["valid_ll"] = np.array([r.valid_ll for r in history])
        arrays["edges"] = np.array([r["edges"] for r in rows])
        arrays["round_valid_ll"] = np.array([r["valid_ll"] for r in rows])
        np.savez(out, **arrays)
    leave()


if __name__ == "__main__":
    main()
