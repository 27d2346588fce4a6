"""Flat views of a model's prunable weights, in the order of the given names."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from prunekit.masks import Mask


def flatten_weights(model: nn.Module, names: Sequence[str]) -> Tensor:
    """The named parameters concatenated into one detached vector."""
    return torch.cat([model.get_parameter(n).detach().reshape(-1) for n in names])


def layer_sizes(model: nn.Module, names: Sequence[str]) -> list[int]:
    return [model.get_parameter(n).numel() for n in names]


def unflatten(flat: Tensor, model: nn.Module, names: Sequence[str]) -> dict[str, Tensor]:
    """Cut a flat vector into tensors shaped like the named parameters."""
    out, start = {}, 0
    for n in names:
        param = model.get_parameter(n)
        out[n] = flat[start : start + param.numel()].reshape(param.shape).to(param.dtype)
        start += param.numel()
    return out


def mask_from_removed(removed: Tensor, model: nn.Module, names: Sequence[str]) -> Mask:
    """A :class:`Mask` (True = kept) from a flat bool vector with True = removed."""
    return Mask(unflatten(~removed.cpu(), model, names))


def removed_from_mask(mask: Mask, names: Sequence[str]) -> Tensor:
    """Flat bool vector, True = removed, in the order of ``names``."""
    return torch.cat([~mask[n].reshape(-1) for n in names])
