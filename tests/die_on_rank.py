"""Run `pcc ARGS...` as one rank of a torchrun job, and make rank R die like a killed process
after epoch N, or with a negative N hang there (the others are left to notice):

    python -m torch.distributed.run --nproc-per-node 2 tests/die_on_rank.py R N train spec.pc ... --distributed

The hook lives here, in the tests, not in the trainer: it wraps Trainer.save_checkpoint."""

import os
import sys
import time

from pccompile.cli import main
from pccompile.learn import trainer

rank, after = int(sys.argv.pop(1)), int(sys.argv.pop(1))
save = trainer.Trainer.save_checkpoint


def save_then_die(self):
    save(self)
    if int(os.environ.get("RANK", -1)) == rank and len(self.history) == abs(after):
        if after < 0:
            time.sleep(3600)
        os._exit(75)


trainer.Trainer.save_checkpoint = save_then_die
sys.argv[0] = "pcc"
main()
