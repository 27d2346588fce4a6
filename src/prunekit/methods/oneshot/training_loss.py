"""The real loss of a model on fixed training samples, as a function of its weights."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prunekit.utils.types import WeightsLoss


@torch.no_grad()
def mean_loss(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 2000) -> float:
    """Mean cross-entropy of ``model`` in eval mode on ``(x, y)``; the mode is restored."""
    was_training = model.training
    model.eval()
    total = 0.0
    for start in range(0, len(x), batch_size):
        logits = model(x[start : start + batch_size])
        total += float(F.cross_entropy(logits, y[start : start + batch_size], reduction="sum"))
    model.train(was_training)
    return total / len(x)


def weights_loss(model: nn.Module, names: Sequence[str], x: Tensor, y: Tensor) -> WeightsLoss:
    """``loss(flat_w)``: mean cross-entropy on ``(x, y)`` of a private copy of ``model``
    whose parameters ``names`` are set to the flat vector ``flat_w``."""
    scratch = copy.deepcopy(model)
    params = [scratch.get_parameter(n) for n in names]

    def loss(flat_w: Tensor) -> float:
        with torch.no_grad():
            start = 0
            for p in params:
                p.copy_(flat_w[start : start + p.numel()].reshape(p.shape))
                start += p.numel()
        return mean_loss(scratch, x, y)

    return loss
