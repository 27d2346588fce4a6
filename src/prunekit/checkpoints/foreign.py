"""Loading trained models saved by other code bases (WoodFisher/CBS) into prunekit models.

Recognised layouts, after a restricted load that executes nothing from the pickle:

- ``"woodfisher"``: a dict with ``model_state_dict`` whose layers are wrapped, as in
  the WoodFisher/CBS MLPNet checkpoint: ``module.fc1._layer.weight`` with a 0/1
  ``module.fc1._weight_mask`` becomes ``fc1.weight``.
- ``"pth.tar"``: a dict with ``state_dict`` (the ImageNet-example layout, as in the
  ResNet20 CIFAR-10 checkpoint), plus metadata such as ``arch`` and ``best_top1``.
- ``"checkpoint"``: a dict with ``model_state_dict``, ``model_state`` or ``model``
  holding a state dict, and optionally ``mask`` (a prunekit checkpoint).
- ``"state-dict"``: a plain ``{name: tensor}`` dict.

In all of them a ``module.`` prefix (``nn.DataParallel``) is stripped, and
``torch.nn.utils.prune`` pairs ``p_orig``/``p_mask`` are folded into ``p``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from prunekit.errors import CheckpointError
from prunekit.masks import Mask, from_torch_prune_state_dict
from prunekit.models import create_model
from prunekit.utils import unpickler
from prunekit.utils.restricted_load import EXPECTED_CHECKPOINT as _EXPECTED
from prunekit.utils.restricted_load import restricted_torch_load

__all__ = [
    "ForeignCheckpoint",
    "check_state_fits",
    "load_foreign_checkpoint",
    "load_pretrained",
    "read_foreign_checkpoint",
    "restricted_torch_load",
]

logger = logging.getLogger(__name__)

# what training code bases pickle beside the weights: skipped without alarm
_BENIGN_PREFIXES = ("torch.", "collections.", "numpy.")

_STATE_DICT_KEYS = ("model_state_dict", "state_dict", "model_state", "model")
_DATA_PARALLEL_PREFIX = "module."
_WRAPPED_LAYER = "._layer."


@dataclass(frozen=True)
class ForeignCheckpoint:
    """What :func:`read_foreign_checkpoint` found in a file.

    ``state_dict`` has prunekit's key names; weights removed by a mask in the file
    are zero. ``mask`` maps parameter names to bool tensors (True = kept) when the
    file holds a mask that removes something, else None. ``metadata`` holds the
    top-level numbers and strings (``epoch``, ``arch``, ``best_top1``...), and
    ``foreign_globals`` the classes and functions the pickle named that were
    replaced by inert placeholders instead of being imported.
    """

    path: Path
    format: str
    state_dict: dict[str, Tensor]
    mask: Mask | None = None
    metadata: dict[str, object] = field(default_factory=dict)
    foreign_globals: list[str] = field(default_factory=list)


def _describe(obj: object) -> str:
    if isinstance(obj, unpickler.ForeignObject) or (
        isinstance(obj, type) and issubclass(obj, unpickler.ForeignObject)
    ):
        return f"a pickled {obj.foreign_name} (not rebuilt, for safety)"
    if obj is None:
        return "None"
    if isinstance(obj, Mapping) and not obj:
        return "an empty dict"
    return f"a {type(obj).__name__}"


def _strip_prefix(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    if state and all(key.startswith(prefix) for key in state):
        return {key[len(prefix) :]: value for key, value in state.items()}
    return state


def _as_tensor_dict(obj: object, path: Path, where: str) -> dict[str, Tensor]:
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(
            f"checkpoint {path}: {where} is {_describe(obj)}, not a non-empty dict of tensors"
        )
    out: dict[str, Tensor] = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, Tensor):
            raise CheckpointError(
                f"checkpoint {path}: {where} entry {key!r} is {_describe(value)}, "
                "not a tensor; expected a dict of parameter name → tensor"
            )
        # a fresh tensor: no requires_grad, no hooks carried over from the pickle
        out[key] = value.detach()
    return out


def _unwrap_layers(
    state: dict[str, Tensor], path: Path
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """WoodFisher/CBS wrapped layers: ``X._layer.p`` → ``X.p``; ``X._p_mask`` → mask of ``X.p``."""
    weights = {f".{key}".replace(_WRAPPED_LAYER, ".")[1:]: v for key, v in state.items()}
    masks: dict[str, Tensor] = {}
    for key in list(weights):
        module, _, leaf = key.rpartition(".")
        if not (leaf.startswith("_") and leaf.endswith("_mask")):
            continue
        target = f"{module}.{leaf[1 : -len('_mask')]}" if module else leaf[1 : -len("_mask")]
        if target not in weights:
            continue
        mask = weights.pop(key)
        if mask.shape != weights[target].shape:
            raise CheckpointError(
                f"checkpoint {path}: mask {key} has shape {tuple(mask.shape)} but {target} "
                f"has shape {tuple(weights[target].shape)}"
            )
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise CheckpointError(f"checkpoint {path}: mask {key} holds values other than 0 and 1")
        masks[target] = mask
    return weights, masks


def _apply_masks(
    state: dict[str, Tensor], masks: Mapping[str, Tensor]
) -> tuple[dict[str, Tensor], Mask | None]:
    if all(bool(m.bool().all()) for m in masks.values()):
        return state, None
    mask = Mask({name: m.bool() for name, m in masks.items()})
    state = dict(state)
    for name, kept in mask.items():
        state[name] = torch.where(kept, state[name], torch.zeros_like(state[name]))
    return state, mask


def _metadata(container: Mapping[object, object]) -> dict[str, object]:
    plain = (int, float, str, bool, type(None))
    return {k: v for k, v in container.items() if isinstance(k, str) and isinstance(v, plain)}


def read_foreign_checkpoint(path: str | os.PathLike[str]) -> ForeignCheckpoint:
    """Load ``path`` safely and convert it to prunekit key names (see the module docstring).

    Raises :class:`CheckpointError` with a one-line message naming the file when
    it is missing, corrupt, truncated or holds no recognisable state dict.
    """
    path = Path(path)
    obj = restricted_torch_load(path)
    foreign = unpickler.foreign_names(obj)
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"checkpoint {path} holds {_describe(obj)}; {_EXPECTED}")

    metadata: dict[str, object] = {}
    file_mask: Mask | None = None
    container_key = next(
        (k for k in _STATE_DICT_KEYS if k in obj and not isinstance(obj[k], Tensor)), None
    )
    if container_key is not None:
        state = _as_tensor_dict(obj[container_key], path, f"'{container_key}'")
        metadata = _metadata(obj)
        if isinstance(obj.get("mask"), Mapping) and obj["mask"]:
            file_mask = Mask(_as_tensor_dict(obj["mask"], path, "'mask'"))
    elif all(isinstance(v, Tensor) for v in obj.values()):
        state = _as_tensor_dict(obj, path, "the state dict")
    else:
        keys = ", ".join(repr(k) for k in list(obj)[:8])
        raise CheckpointError(f"checkpoint {path} is a dict with keys {keys}; {_EXPECTED}")

    state = _strip_prefix(state, _DATA_PARALLEL_PREFIX)
    wrapped = any(_WRAPPED_LAYER in f".{key}" for key in state)
    if wrapped:
        state, masks = _unwrap_layers(state, path)
    else:
        masks = {}
    if any(key.endswith("_orig") for key in state):
        state, prune_mask = from_torch_prune_state_dict(state)
        masks.update(prune_mask)
    if file_mask is not None:
        for name, kept in file_mask.items():
            if name not in state or state[name].shape != kept.shape:
                raise CheckpointError(
                    f"checkpoint {path}: 'mask' entry {name} matches no weight of that shape"
                )
        masks.update(file_mask)
    state, mask = _apply_masks(state, masks)

    if container_key == "model_state_dict" and wrapped:
        fmt = "woodfisher"
    elif container_key == "state_dict":
        fmt = "pth.tar"
    elif container_key is not None:
        fmt = "checkpoint"
    else:
        fmt = "state-dict"
    _report_skipped(path, foreign)
    return ForeignCheckpoint(path, fmt, state, mask, metadata, foreign)


def _report_skipped(path: Path, foreign: list[str]) -> None:
    """Say which pickled objects were skipped (never imported or run): a warning when
    any is not a torch/numpy training object (``os.system``, ``builtins.eval``...)."""
    if not foreign:
        return
    unusual = [name for name in foreign if not name.startswith(_BENIGN_PREFIXES)]
    if unusual:
        logger.warning(
            "WARNING: checkpoint %s references %s outside the weights; skipped, nothing "
            "was run (only the tensors were loaded)",
            path,
            _few(unusual),
        )
    else:
        logger.info("checkpoint %s: skipped pickled %s (not weights)", path, _few(foreign))


def load_foreign_checkpoint(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """The state dict in ``path``, with prunekit's key names, loaded without executing code.

    Handles the WoodFisher/CBS MLPNet checkpoint (``module.fcN._layer.weight`` →
    ``fcN.weight``; all-ones ``_weight_mask`` entries dropped, other masks applied:
    removed weights are zero), the ResNet20 ``.pth.tar`` (``state_dict``, ``module.``
    stripped), prunekit checkpoints and plain state dicts. Use
    :func:`read_foreign_checkpoint` to get the mask and the metadata too.

    >>> state = load_foreign_checkpoint("mnist_25_epoch_93.97.ckpt")  # doctest: +SKIP
    >>> sorted(state)  # doctest: +SKIP
    ['fc1.weight', 'fc2.weight', 'fc3.weight']
    """
    return read_foreign_checkpoint(path).state_dict


def _few(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def check_state_fits(
    model: nn.Module, state: Mapping[str, Tensor], path: str | os.PathLike[str], name: str
) -> None:
    """:class:`CheckpointError` listing missing/unexpected keys, shape mismatches and
    integer or bool tensors where the model has floating-point ones."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    wrong_dtype = [
        f"{k} ({state[k].dtype})"
        for k, v in expected.items()
        if k in state and v.is_floating_point() and not state[k].is_floating_point()
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_few(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_few(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches (file vs model): {_few(mismatched)}")
    if wrong_dtype:
        problems.append(f"not floating-point: {_few(wrong_dtype)}")
    if problems:
        raise CheckpointError(
            f"checkpoint {path} does not fit model {name!r}: " + "; ".join(problems)
        )


def load_pretrained(
    model_name: str, path: str | os.PathLike[str], **model_kwargs: object
) -> nn.Module:
    """``create_model(model_name, **model_kwargs)`` with the weights of ``path`` (strict).

    The file is read with :func:`read_foreign_checkpoint`. A file that does not fit
    the model raises :class:`CheckpointError` listing the missing and unexpected keys
    and shape mismatches. The model is returned in training mode, as built.

    >>> model = load_pretrained("mlpnet", "mnist_25_epoch_93.97.ckpt")  # doctest: +SKIP
    """
    model = create_model(model_name, **model_kwargs)
    checkpoint = read_foreign_checkpoint(path)
    check_state_fits(model, checkpoint.state_dict, checkpoint.path, model_name)
    model.load_state_dict(checkpoint.state_dict, strict=True)
    return model
