"""Optimisers and learning-rate schedules, built by name.

Schedules are stepped once per epoch. ``multistep`` milestones are fractions of the
training (the GraSP setting ``(0.5, 0.75)`` divides the rate by 10 at 50% and 75%).
``step`` multiplies the rate by ``gamma`` every ``step_size`` epochs; without a
``step_size`` it steps every third of the training (``default_step_size``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch.optim import lr_scheduler

from prunekit.errors import ConfigError

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("step", "cosine", "multistep", "constant")


def check_choice(value: str, valid: Sequence[str], what: str) -> str:
    if value not in valid:
        raise ConfigError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")
    return value


def build_optimizer(
    params: Iterable[torch.nn.Parameter],
    name: str = "sgd",
    lr: float = 0.1,
    momentum: float = 0.9,
    nesterov: bool = False,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """``sgd`` (with ``momentum``, ``nesterov``), ``adam`` or ``adamw``.

    ``weight_decay`` is L2 added to the gradient for sgd/adam, decoupled for adamw.
    ``momentum`` and ``nesterov`` apply to sgd only.
    """
    check_choice(name, OPTIMIZERS, "optimizer")
    if not (math.isfinite(lr) and lr > 0):
        raise ConfigError(f"learning rate must be a finite number > 0, got {lr}")
    if not (math.isfinite(weight_decay) and weight_decay >= 0):
        raise ConfigError(f"weight_decay must be a finite number >= 0, got {weight_decay}")
    if name == "sgd":
        if not 0 <= momentum < 1:
            raise ConfigError(f"momentum must be in [0, 1), got {momentum}")
        if nesterov and momentum == 0:
            raise ConfigError("nesterov needs momentum > 0")
        return torch.optim.SGD(
            params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay
        )
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def milestone_epochs(milestones: Sequence[float], epochs: int) -> list[int]:
    """Epochs (0-based) at which multistep decays: ``round(f · epochs)``, at least 1."""
    out = []
    for f in milestones:
        if not 0 < float(f) < 1:
            raise ConfigError(
                f"multistep milestones are fractions of training in (0, 1), got {f!r}"
            )
        out.append(max(1, int(float(f) * epochs + 0.5)))
    return sorted(out)


def default_step_size(epochs: int) -> int:
    """Epochs between two decays of ``step`` when none is given: a third of the
    training, at least 1 (so 30 epochs decay after epochs 10 and 20)."""
    return max(1, round(int(epochs) / 3))


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    name: str,
    epochs: int,
    milestones: Sequence[float] = (0.5, 0.75),
    step_size: int | None = None,
    gamma: float = 0.1,
) -> lr_scheduler.LRScheduler:
    """An epoch-wise schedule: ``step`` (×gamma every ``step_size`` epochs, by default
    :func:`default_step_size`), ``cosine``
    (to 0 over ``epochs``), ``multistep`` (×gamma at each fraction of ``epochs`` in
    ``milestones``) or ``constant``."""
    check_choice(name, SCHEDULERS, "scheduler")
    if int(epochs) < 1:
        raise ConfigError(f"epochs must be >= 1, got {epochs}")
    if not (math.isfinite(gamma) and gamma > 0):
        raise ConfigError(f"gamma must be a finite number > 0, got {gamma}")
    if name == "step":
        if step_size is None:
            step_size = default_step_size(epochs)
        if int(step_size) < 1:
            raise ConfigError(f"scheduler 'step' needs step_size >= 1, got {step_size}")
        return lr_scheduler.StepLR(optimizer, step_size=int(step_size), gamma=gamma)
    if name == "cosine":
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=int(epochs))
    if name == "multistep":
        return lr_scheduler.MultiStepLR(
            optimizer, milestones=milestone_epochs(milestones, int(epochs)), gamma=gamma
        )
    return lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
