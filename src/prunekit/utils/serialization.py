"""Loading torch files without executing pickled code."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from prunekit.errors import CheckpointError, UnsafeFileError


def safe_torch_load(path: str | Path, what: str = "checkpoint") -> object:
    """``torch.load(path, weights_only=True)`` with one-line errors for users.

    Missing, truncated and corrupt files, and files that need arbitrary pickled
    objects, raise :class:`CheckpointError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # weights_only refuses both unsafe and garbled pickles with this type: look at what
        # the file names, through the restricted unpickler that runs nothing
        names = _pickled_globals(path)
        if names:
            raise UnsafeFileError(
                f"{what} {path} was refused for safety: it names Python objects other than "
                f"tensors ({', '.join(names[:3])[:120]}); if it is a WoodFisher/CBS "
                "checkpoint, import it with prunekit.checkpoints.load_foreign_checkpoint"
            ) from None
        raise CheckpointError(
            f"{what} {path} is corrupt or not a torch file (unreadable pickle data); "
            "delete it or point to another file"
        ) from None
    except Exception as exc:  # noqa: BLE001 - a damaged file fails in many ways
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{what} {path} is corrupt or truncated ({first[:160]}); "
            "delete it or point to another file"
        ) from None


def _pickled_globals(path: Path) -> list[str]:
    """Names of the non-tensor globals in a torch file (empty when it cannot be read)."""
    from prunekit.utils.restricted_load import restricted_torch_load
    from prunekit.utils.unpickler import foreign_names

    try:
        return foreign_names(restricted_torch_load(path))
    except CheckpointError:
        return []
