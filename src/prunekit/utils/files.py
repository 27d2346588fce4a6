"""Atomic file writes: write to a uniquely named temporary file in the same folder, then
rename. Failures to write (read-only file system, no permission, disk full, a path
under a file) become one-line :class:`~prunekit.errors.RunFolderError`; the file that
was there before is left as it was."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from prunekit.errors import RunFolderError
from prunekit.utils.distributed import is_main_process

TEMP_SUFFIX = ".tmp"


def _reason(exc: BaseException, folder: Path | None = None) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        name = errno.errorcode.get(exc.errno or 0)
        return f"{exc.strerror} ({name})" if name in ("ENOSPC", "EROFS", "EDQUOT") else exc.strerror
    text = str(exc).strip()
    if folder is not None and "inline_container" in text and _disk_full(folder):
        # torch.save writing to a path reports a full disk as a bare zip-writer error
        return "No space left on device (ENOSPC)"
    return (text.splitlines()[0] if text else type(exc).__name__)[:160]


def _disk_full(folder: Path) -> bool:
    try:
        return os.statvfs(folder).f_bavail == 0
    except OSError:
        return False


def read_only(path: str | Path) -> bool:
    """True when ``path`` lies on a file system mounted read-only."""
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def cannot_write(path: str | Path, exc: BaseException) -> RunFolderError:
    """The one-line error for a failed write of ``path``."""
    return RunFolderError(
        f"cannot write {path}: {_reason(exc, Path(path).parent)}; check that the folder is "
        "writable, is not under a file and that the disk has space, or give another --run-dir"
    )


def ensure_folder(path: str | Path) -> Path:
    """Create folder ``path`` (and its parents) or raise :class:`RunFolderError`."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise RunFolderError(f"{path} is a file, not a folder; give another --run-dir") from None
    except OSError as exc:
        raise cannot_write(path, exc) from None
    if not os.access(path, os.W_OK | os.X_OK):
        if read_only(path):
            raise RunFolderError(
                f"cannot write in {path}: read-only file system (EROFS); give a --run-dir on "
                "a writable disk"
            )
        raise RunFolderError(f"cannot write in {path}: permission denied; give another --run-dir")
    return path


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(temp_path)`` then rename the temporary file onto ``path``.

    A crash leaves either the old file or the new one, never a truncated file; a kill
    may leave a ``.NAME.*.tmp`` file, which :func:`remove_stale_temp_files` removes.
    Under ``torch.distributed`` only rank 0 writes; the other ranks skip the write.
    """
    path = Path(path)
    if not is_main_process():
        return path
    ensure_folder(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise cannot_write(path, exc) from None
    try:
        write(tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # torch.save reports a full disk as RuntimeError
        _unlink_quietly(tmp)
        raise cannot_write(path, exc) from None
    except BaseException:
        _unlink_quietly(tmp)
        raise
    return path


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def remove_stale_temp_files(folder: str | Path) -> list[Path]:
    """Delete the temporary files that killed writers left below ``folder``.

    Call it only while holding the folder's lock (no other writer is active)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for tmp in folder.rglob(f".*{TEMP_SUFFIX}"):
        if tmp.is_file():
            _unlink_quietly(str(tmp))
            removed.append(tmp)
    return removed


def atomic_write_text(path: str | Path, text: str) -> Path:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)

    return atomic_write(path, write)


def atomic_torch_save(obj: object, path: str | Path) -> Path:
    """``torch.save`` atomically. Written through a Python file object, so that a full
    disk raises ``OSError(ENOSPC)`` (torch's own writer would report it as a bare
    ``inline_container.cc`` error)."""
    import torch

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            torch.save(obj, handle)

    return atomic_write(path, write)
