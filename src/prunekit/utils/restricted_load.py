"""``torch.load`` through a restricted unpickler: tensors are rebuilt, every other
object a pickle names becomes an inert placeholder and nothing is imported or run."""

from __future__ import annotations

import os
import warnings
import zipfile
from pathlib import Path

import torch

from prunekit.errors import CheckpointError
from prunekit.utils import unpickler

EXPECTED_CHECKPOINT = (
    "expected a torch checkpoint holding a state dict (a WoodFisher/CBS "
    "'model_state_dict', a 'state_dict', or a plain dict of name → tensor)"
)
_EXPECTED = EXPECTED_CHECKPOINT


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line[:160]


def _is_torchscript_archive(path: Path) -> bool:
    # torch.load hands TorchScript archives (a zip with constants.pkl) to torch.jit.load;
    # never let it. Ask torch's own zip reader, which is the one torch.load would use.
    reader_class = getattr(torch._C, "PyTorchFileReader", None)
    try:
        if reader_class is not None:
            records = reader_class(str(path)).get_all_records()
        else:
            with zipfile.ZipFile(path) as archive:
                records = [name.rpartition("/")[2] for name in archive.namelist()]
    except Exception:  # unreadable: torch.load will refuse it as well
        return False
    return "constants.pkl" in records


def restricted_torch_load(path: str | os.PathLike[str], what: str = "checkpoint") -> object:
    """``torch.load`` of ``path`` onto the CPU through the restricted unpickler.

    Tensors are rebuilt; every other class or function the pickle names is
    replaced by an inert :class:`~prunekit.utils.unpickler.ForeignObject`.
    Missing, truncated or corrupt files and TorchScript archives raise
    :class:`CheckpointError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} {path} does not exist or is not a file")
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head == b"PK\x03\x04" and _is_torchscript_archive(path):
        raise CheckpointError(
            f"{what} {path} is a TorchScript archive, not a checkpoint; {_EXPECTED}"
        )
    if os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "0").lower() in {"1", "y", "yes", "true"}:
        raise CheckpointError(
            f"cannot read {what} {path}: TORCH_FORCE_WEIGHTS_ONLY_LOAD is set, which forbids "
            "prunekit's restricted unpickler; unset it to import this file"
        )
    try:
        with warnings.catch_warnings():
            # legacy files name the classes of pickled modules; placeholders have no source
            warnings.filterwarnings("ignore", message="Couldn't retrieve source code")
            return torch.load(
                path,
                map_location="cpu",
                pickle_module=unpickler,
                weights_only=False,
                mmap=False,
            )
    except Exception as exc:  # untrusted input: any failure means a bad file
        raise CheckpointError(
            f"{what} {path} is corrupt, truncated or not a torch file "
            f"({type(exc).__name__}: {_first_line(exc)}); {_EXPECTED}"
        ) from None
