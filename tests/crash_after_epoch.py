"""Run `pcc ARGS...` and die like a killed process right after the checkpoint of epoch N:

    python tests/crash_after_epoch.py N train spec.pc --data ...

The hook lives here, in the tests, not in the trainer: it wraps Trainer.save_checkpoint."""

import os
import sys

from pccompile.cli import main
from pccompile.learn import trainer

after = int(sys.argv.pop(1))
save = trainer.Trainer.save_checkpoint


def save_then_die(self):
    save(self)
    if len(self.history) == after:
        os._exit(75)


trainer.Trainer.save_checkpoint = save_then_die
sys.argv[0] = "pcc"
main()
