"""Training: optimisers, schedules, train/evaluate loops, atomic checkpoints, resume, seeding.

``fit`` trains any model on any DataLoaders while holding a :class:`prunekit.masks.Mask`
(removed weights stay exactly zero, through momentum, weight decay and Adam).
"""

from prunekit.training.checkpoint import load_checkpoint, save_checkpoint
from prunekit.training.loop import evaluate, train_one_epoch
from prunekit.training.optim import OPTIMIZERS, SCHEDULERS, build_optimizer, build_scheduler
from prunekit.training.seeding import get_rng_state, seed_everything, set_rng_state

__all__ = [
    "OPTIMIZERS",
    "SCHEDULERS",
    "build_optimizer",
    "build_scheduler",
    "evaluate",
    "get_rng_state",
    "load_checkpoint",
    "save_checkpoint",
    "seed_everything",
    "set_rng_state",
    "train_one_epoch",
]
