"""One rank of a data-parallel run (tests/test_distributed.py starts it under torchrun's
environment variables): trains a small digits HCLT and, on rank 0, saves its parameters."""

import sys

import numpy as np
import torch

import pccompile as pc
from pccompile.datasets import load_builtin
from pccompile.learn import TrainConfig, Trainer
from pccompile.learn.distributed import join, leave

SPEC = 'var px[64] : categorical(17)\nimage = [8, 8]\nroot = hclt(px, latents=6, data="builtin:digits")\n'


def train(optimizer: str, group=None, epochs: int = 2):
    torch.manual_seed(0)
    model = pc.compile(SPEC, seed=5, dtype=torch.float64)
    x = load_builtin("builtin:digits")[:300]
    cfg = TrainConfig(epochs=epochs, batch_size=64, optimizer=optimizer, seed=1)
    history = Trainer(model, cfg, x, valid=x[:97], group=group).run()
    return model, history


def main():
    optimizer, out = sys.argv[1], sys.argv[2]
    group = join(timeout_s=60)
    model, history = train(optimizer, group)
    if group.is_main:
        arrays = {k: v.detach().numpy() for k, v in model.state_dict().items()}
        arrays["train_ll"] = np.array([r.train_ll for r in history])
        arrays["valid_ll"] = np.array([r.valid_ll for r in history])
        np.savez(out, **arrays)
    leave()


if __name__ == "__main__":
    main()
