"""Early stopping: the best epoch by validation LL, its model kept on disk, and patience.

`BestEpoch` is what plain training (`pcc train --patience`, the saved model is the best epoch)
and each prune-grow round share. The model file is rewritten only when an epoch beats the best
so far, so after a kill between that write and the epoch's checkpoint, the resumed run repeats
that epoch, which beats the best again and rewrites the same file: a resumed run ends on the
same model as an uninterrupted one.
"""

from __future__ import annotations

import math
from pathlib import Path


def better(a, b) -> bool:
    """Validation LL a beats b (None, no validation data: the later one wins)."""
    return a is None or b is None or a > b


class BestEpoch:
    """The best epoch of a run (or of one round, `tag`) and its model in `path`."""

    def __init__(self, path: Path, patience: int = 0, tag=None, writer: bool = True):
        """`writer` False (a data-parallel rank other than 0): the best state is kept in memory,
        not written, so that one process alone writes `path`."""
        self.path, self.patience, self.tag, self.writer = path, patience, tag, writer
        self.record: dict | None = None  # {"epoch", "train_ll", "valid_ll", "test_ll", "tag"}
        self.since = 0  # patience counts from here at the earliest (the start of a training phase)
        self._state: dict | None = None  # the kept parameters of a non-writer

    def offer(self, model, record: dict) -> bool:
        """Keep `model` when its record beats the best so far; True when it did."""
        if self.record is not None and not better(record["valid_ll"], self.record["valid_ll"]):
            return False
        from pccompile.io import save

        self.record = {**record, "tag": self.tag}
        if self.writer:
            save(model, self.path, extra={"best_epoch": self.record})
        else:
            self._state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return True

    def stalled(self, epoch: int) -> bool:
        """`patience` epochs have passed without a better validation LL."""
        if not self.patience or self.record is None:
            return False
        return epoch - max(self.record["epoch"], self.since) >= self.patience

    def restore(self, epoch: int, since: int = 0) -> None:
        """After a resume at `epoch`: the best record on disk, if it belongs to this run (its tag)
        and lies in (since, epoch]; otherwise none (see the module docstring)."""
        from pccompile.io import read

        self.record = None
        if not self.path.exists():
            return
        try:
            record = read(self.path)[0]["extra"].get("best_epoch")
        except Exception:  # a damaged or foreign file: the best is found again from here on
            return
        if isinstance(record, dict) and record.get("tag") == self.tag:
            if since <= record.get("epoch", math.inf) <= epoch:
                self.record = record

    def load_into(self, model) -> None:
        """Give `model` the kept parameters."""
        from pccompile.io import module_state, read

        if self._state is not None:
            model.load_state_dict(self._state)
            return
        model.load_state_dict(module_state(read(self.path)[1]))


class KeepBest:
    """Between-epochs hook of plain training: keeps the best epoch by validation LL in `path`;
    after `patience` epochs without a better one (0: never), a run with a full-batch finishing
    phase (TrainConfig.finish_epochs) moves on to it from the best epoch, as the released HCLT
    code does, and a run in its last phase stops."""

    def __init__(self, path: Path, patience: int = 0, writer: bool = True):
        self.best = BestEpoch(path, patience, writer=writer)

    def restore(self, epoch: int, finish_from: int | None = None) -> None:
        self.best.restore(epoch)
        self.best.since = finish_from or 0

    def __call__(self, trainer, rec):
        record = {"epoch": rec.epoch, "train_ll": rec.train_ll, "valid_ll": rec.valid_ll, "test_ll": rec.test_ll}
        self.best.offer(trainer.model, record)
        if self.best.stalled(rec.epoch):
            if trainer.finish_early(rec.epoch):
                self.best.load_into(trainer.model)
                self.best.since = rec.epoch
            else:
                trainer.stopped = True
        return None
