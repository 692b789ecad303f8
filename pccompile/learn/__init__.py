"""Learning: EM (mini-batch and full-batch) and gradient training loops, and the rounds learners
(prune-grow, compression) built on them."""

from .best import BestEpoch, KeepBest
from .em import em_step, em_update, step_size_at
from .rounds import Compress, CompressOptions, PruneGrow, PruneGrowOptions, prune_grow
from .trainer import EpochRecord, TrainConfig, Trainer, mean_log_likelihood

__all__ = [
    "BestEpoch",
    "KeepBest",
    "PruneGrow",
    "Compress",
    "CompressOptions",
    "PruneGrowOptions",
    "prune_grow",
    "em_step",
    "em_update",
    "step_size_at",
    "EpochRecord",
    "Trainer",
    "TrainConfig",
    "mean_log_likelihood",
]
