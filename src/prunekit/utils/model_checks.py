"""Checks of a model's inputs and weights, run before any work so that an error names
the real cause (NaN weights, a batch of the wrong shape, labels out of range) instead
of a failure deep inside a forward pass or a NaN result."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from prunekit.errors import ConfigError, DataError, NonFiniteError


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def check_finite_parameters(model: nn.Module, stage: str) -> None:
    """:class:`NonFiniteError` naming the first parameter holding NaN or Inf."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.is_floating_point() and not bool(torch.isfinite(param).all()):
                bad = int((~torch.isfinite(param)).sum())
                raise NonFiniteError(
                    f"{stage}: the model's weights are not finite ({bad} NaN/Inf values in "
                    f"{name}); check the checkpoint or the training settings that produced them"
                )


def check_finite(tensor: Tensor, what: str, stage: str) -> None:
    """:class:`NonFiniteError` when ``tensor`` holds NaN or Inf."""
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).sum())
        raise NonFiniteError(f"{stage}: {what} hold {bad} NaN/Inf values")


def output_width(model: nn.Module, inputs: Tensor, what: str = "the inputs") -> int:
    """Classes the model outputs for ``inputs`` (a forward in eval mode, no gradient,
    every module's mode restored); :class:`ConfigError` when the inputs do not fit."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            logits = model(inputs)
    except (RuntimeError, ValueError, IndexError) as exc:
        raise ConfigError(
            f"{what} of shape {tuple(inputs.shape[1:])} do not fit model "
            f"{type(model).__name__} ({_first_line(exc)})"
        ) from None
    finally:
        for module, mode in modes:
            module.training = mode
    if logits.dim() != 2:
        raise ConfigError(f"model {type(model).__name__} outputs shape {tuple(logits.shape)}")
    return int(logits.shape[1])


def check_batch(model: nn.Module, inputs: Tensor, targets: Tensor, what: str = "batch") -> None:
    """A classification batch fits ``model``: as many targets as inputs (at least one),
    finite inputs of a shape the model takes, integer labels within its outputs."""
    if not isinstance(inputs, Tensor) or not isinstance(targets, Tensor):
        raise ConfigError(f"{what}: inputs and targets must be tensors")
    if len(inputs) != len(targets):
        raise DataError(f"{what}: {len(inputs)} inputs but {len(targets)} targets")
    if len(inputs) == 0:
        raise DataError(f"{what} holds no samples; give at least one (inputs, targets) pair")
    check_finite(inputs, "the inputs", what)
    if targets.dim() != 1 or targets.is_floating_point() or targets.dtype == torch.bool:
        return  # not class labels (soft targets, regression): the loss decides
    device = next((p.device for p in model.parameters()), inputs.device)
    width = output_width(model, inputs[:1].to(device), f"{what}: inputs")
    low, high = int(targets.min()), int(targets.max())
    if low < 0 or high >= width:
        raise DataError(
            f"{what}: labels range over [{low}, {high}] but the model has {width} outputs "
            f"(labels must be in [0, {width - 1}])"
        )
