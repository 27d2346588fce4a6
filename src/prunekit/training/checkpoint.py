"""Training checkpoints: everything needed to resume, readable with ``weights_only=True``.

A checkpoint is a dict of tensors and plain Python values only:

- ``format``: ``"prunekit.training/1"``
- ``epoch``: number of epochs completed
- ``model``, ``optimizer``, ``scheduler``: their ``state_dict()`` (model unwrapped from DDP)
- ``mask``: ``{parameter name: bool tensor}`` (True = kept), or ``None`` for a dense run
- ``metrics``: ``{"last": {...}, "best": {...}}`` per-epoch records
- ``rng``: from :func:`prunekit.training.seeding.get_rng_state`
- ``config``: the training settings as a plain dict

Files are written atomically (temporary file, then rename).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from prunekit.errors import CheckpointError
from prunekit.masks import Mask
from prunekit.utils.files import atomic_torch_save
from prunekit.utils.serialization import safe_torch_load

FORMAT = "prunekit.training/1"
KEYS = ("format", "epoch", "model", "optimizer", "scheduler", "mask", "metrics", "rng", "config")


def save_checkpoint(
    path: str | Path,
    *,
    epoch: int,
    model_state: dict[str, torch.Tensor],
    optimizer_state: dict,
    scheduler_state: dict,
    mask: Mask | None,
    metrics: dict[str, Any],
    rng: dict,
    config: dict[str, Any],
) -> Path:
    """Write a training checkpoint atomically to ``path``."""
    state = {
        "format": FORMAT,
        "epoch": int(epoch),
        "model": {k: v.detach().cpu() for k, v in model_state.items()},
        "optimizer": optimizer_state,
        "scheduler": scheduler_state,
        "mask": None if mask is None else {n: m.detach().cpu() for n, m in mask.items()},
        "metrics": metrics,
        "rng": rng,
        "config": config,
    }
    return atomic_torch_save(state, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and validate a checkpoint from :func:`save_checkpoint`.

    Missing, truncated, corrupt or foreign files raise :class:`CheckpointError`.
    ``"mask"`` comes back as a :class:`Mask` (or ``None``).
    """
    state = safe_torch_load(path, what="training checkpoint")
    if not isinstance(state, dict):
        raise CheckpointError(f"training checkpoint {path} is not a dict ({type(state).__name__})")
    missing = [k for k in KEYS if k not in state]
    if missing:
        raise CheckpointError(
            f"training checkpoint {path} lacks {', '.join(missing)}: "
            "not a prunekit training checkpoint"
        )
    if state["format"] != FORMAT:
        raise CheckpointError(
            f"training checkpoint {path} has format {state['format']!r}, expected {FORMAT!r}"
        )
    if not isinstance(state["epoch"], int) or state["epoch"] < 0:
        raise CheckpointError(f"training checkpoint {path} has a bad epoch {state['epoch']!r}")
    model = state["model"]
    if not isinstance(model, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in model.items()
    ):
        raise CheckpointError(f"training checkpoint {path}: 'model' is not a state_dict")
    for key in ("optimizer", "scheduler", "metrics", "rng", "config"):
        if not isinstance(state[key], dict):
            raise CheckpointError(f"training checkpoint {path}: {key!r} is not a dict")
    mask = state["mask"]
    if mask is not None:
        if not isinstance(mask, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) and v.dtype == torch.bool
            for k, v in mask.items()
        ):
            raise CheckpointError(
                f"training checkpoint {path}: 'mask' is not a dict of name → bool tensor"
            )
        state["mask"] = Mask(mask)
    return state
