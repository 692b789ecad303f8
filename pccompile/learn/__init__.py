"""Learning: EM (mini-batch and full-batch) and gradient training loops."""

from .em import em_step, em_update, step_size_at
from .prune_grow import Compress, CompressOptions, PruneGrow, PruneGrowOptions
from .trainer import EpochRecord, TrainConfig, Trainer, mean_log_likelihood

__all__ = [
    "PruneGrow",
    "Compress",
    "CompressOptions",
    "PruneGrowOptions",
    "em_step",
    "em_update",
    "step_size_at",
    "EpochRecord",
    "Trainer",
    "TrainConfig",
    "mean_log_likelihood",
]
