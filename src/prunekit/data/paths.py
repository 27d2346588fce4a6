"""Where data lives: the data directory and the folders searched inside it."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from prunekit.errors import DataNotFoundError

DATA_ENV_VAR = "PRUNEKIT_DATA"
DEFAULT_DATA_DIR = "./data"


def resolve_data_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The data directory: ``root`` if given, else ``$PRUNEKIT_DATA``, else ``./data``."""
    if root is not None:
        return Path(root).expanduser()
    from_env = os.environ.get(DATA_ENV_VAR)
    if from_env:
        return Path(from_env).expanduser()
    return Path(DEFAULT_DATA_DIR)


def find_file(folder: Path, name: str, allow_gz: bool = False) -> Path | None:
    """``folder/name`` (or ``folder/name.gz`` when ``allow_gz``) if it is a file, else None."""
    candidates = [folder / name] + ([folder / f"{name}.gz"] if allow_gz else [])
    for path in candidates:
        if path.is_file():
            return path
    return None


def find_folder_with(
    candidates: Sequence[Path], names: Sequence[str], allow_gz: bool = False
) -> Path | None:
    """The first of ``candidates`` that holds every file in ``names``, or None."""
    for folder in candidates:
        if all(find_file(folder, name, allow_gz) is not None for name in names):
            return folder
    return None


def missing_files_error(
    dataset: str,
    names: Sequence[str],
    searched: Sequence[Path],
    put_in: Path,
    downloadable: bool,
) -> DataNotFoundError:
    """A :class:`DataNotFoundError` naming the files, the folders searched and what to do."""
    folders = ", ".join(str(p.absolute()) for p in searched)
    message = (
        f"{dataset} data not found: missing {', '.join(names)}. "
        f"Searched: {folders}. Put the files in {put_in.absolute()} "
        f"(or choose the data directory with root=... or ${DATA_ENV_VAR})"
    )
    if downloadable:
        message += "; when online, download=True (--download on the command line) fetches them."
    else:
        message += "; this dataset cannot be downloaded automatically."
    return DataNotFoundError(message)
