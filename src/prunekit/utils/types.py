"""Type aliases shared by several packages."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

Criterion = Callable[[Tensor, Tensor], Tensor]
"""``criterion(logits, targets) -> loss``, e.g. ``torch.nn.functional.cross_entropy``."""

WeightsLoss = Callable[[Tensor], float]
"""``loss(flat_w) -> float``: a model's loss on fixed data with its prunable weights set to
the flat vector ``flat_w``."""

RemovalLoss = Callable[[Tensor], float]
"""``loss(removed) -> float``: the loss of a removal set (bool vector, True = removed)."""
