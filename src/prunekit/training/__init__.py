"""Training: optimisers, schedules, train/evaluate loops, atomic checkpoints, resume, seeding.

``fit`` trains any model on any DataLoaders while holding a :class:`prunekit.masks.Mask`
(removed weights stay exactly zero, through momentum, weight decay and Adam).
"""

from prunekit.training.checkpoint import load_checkpoint, save_checkpoint
from prunekit.training.distributed import (
    find_free_port,
    get_rank,
    is_distributed,
    is_main_process,
    launch_local,
)
from prunekit.training.loop import evaluate, train_one_epoch
from prunekit.training.optim import OPTIMIZERS, SCHEDULERS, build_optimizer, build_scheduler
from prunekit.training.seeding import get_rng_state, seed_everything, set_rng_state
from prunekit.training.trainer import TrainConfig, fit

__all__ = [
    "OPTIMIZERS",
    "SCHEDULERS",
    "TrainConfig",
    "build_optimizer",
    "build_scheduler",
    "evaluate",
    "find_free_port",
    "fit",
    "get_rank",
    "get_rng_state",
    "is_distributed",
    "is_main_process",
    "launch_local",
    "load_checkpoint",
    "save_checkpoint",
    "seed_everything",
    "set_rng_state",
    "train_one_epoch",
]
