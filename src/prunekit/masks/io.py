"""Saving masks and converting to/from ``torch.nn.utils.prune``.

A saved mask is a plain ``{name: bool tensor}`` dict written with ``torch.save``
(atomically), loadable with ``weights_only=True``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from prunekit.errors import CheckpointError, ConfigError
from prunekit.masks.mask import Mask
from prunekit.utils.files import atomic_torch_save
from prunekit.utils.serialization import safe_torch_load


def save_mask(mask: Mask, path: str | Path) -> Path:
    return atomic_torch_save({n: m.cpu() for n, m in mask.items()}, path)


def load_mask(path: str | Path) -> Mask:
    data = safe_torch_load(path, what="mask file")
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in data.items()
    ):
        raise CheckpointError(f"mask file {path} is not a dict of parameter name → tensor")
    try:
        return Mask(data)
    except ConfigError as exc:
        raise CheckpointError(f"mask file {path}: {exc}") from None


def _split(name: str) -> tuple[str, str]:
    module_name, _, param_name = name.rpartition(".")
    return module_name, param_name


def to_torch_prune(model: nn.Module, mask: Mask) -> nn.Module:
    """Reparametrise ``model`` the way ``torch.nn.utils.prune`` does.

    Each masked parameter ``p`` becomes ``p_orig`` (a parameter) with a buffer
    ``p_mask`` (float 0/1), and ``p`` is recomputed as their product.
    """
    mask.check_compatible(model)
    for name, m in mask.items():
        module_name, param_name = _split(name)
        module = model.get_submodule(module_name)
        device = getattr(module, param_name).device
        torch_prune.custom_from_mask(module, param_name, m.to(device))
    return model


def from_torch_prune(model: nn.Module, make_permanent: bool = False) -> Mask:
    """Collect the masks of a model pruned with ``torch.nn.utils.prune``.

    Keys are the original parameter names (``fc1.weight``, not ``fc1.weight_orig``).
    With ``make_permanent``, the reparametrisation is removed (``prune.remove``), leaving
    plain parameters with the removed weights at zero.
    """
    mask = Mask()
    for module_name, module in model.named_modules():
        for buffer_name, buffer in list(module.named_buffers(recurse=False)):
            if buffer_name.endswith("_mask") and hasattr(module, buffer_name[:-5] + "_orig"):
                param_name = buffer_name[:-5]
                full = f"{module_name}.{param_name}" if module_name else param_name
                mask[full] = buffer != 0
                if make_permanent:
                    torch_prune.remove(module, param_name)
    return mask


def from_torch_prune_state_dict(state_dict: dict[str, torch.Tensor]) -> tuple[dict, Mask]:
    """Split a state_dict saved from a ``torch.nn.utils.prune`` model into a plain
    state_dict (``p = p_orig * p_mask``) and a :class:`Mask`."""
    plain: dict[str, torch.Tensor] = {}
    mask = Mask()
    for key, value in state_dict.items():
        if key.endswith("_orig"):
            base = key[: -len("_orig")]
            m = state_dict.get(base + "_mask")
            if m is None:
                raise CheckpointError(f"state_dict has {key} but no {base}_mask")
            mask[base] = m != 0
            plain[base] = value * m
        elif key.endswith("_mask") and key[: -len("_mask")] + "_orig" in state_dict:
            continue
        else:
            plain[key] = value
    return plain, mask
