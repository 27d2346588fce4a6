"""Loading torch files without executing pickled code."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from prunekit.errors import CheckpointError


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
    except pickle.UnpicklingError as exc:
        detail = str(exc)
        if "Unsupported global" in detail:
            global_name = detail.split("Unsupported global:")[-1].strip().split()[:3]
            raise CheckpointError(
                f"{what} {path} holds pickled objects other than tensors "
                f"({' '.join(global_name)[:120]}) and is refused for safety; if it is a "
                "WoodFisher/CBS checkpoint, import it with "
                "prunekit.checkpoints.load_foreign_checkpoint"
            ) from None
        raise CheckpointError(
            f"{what} {path} is corrupt or not a torch file (unreadable pickle data)"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{what} {path} is corrupt or truncated ({first[:160]}); "
            "delete it or point to another file"
        ) from None
