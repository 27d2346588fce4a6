"""One writer per run folder: an advisory lock file holding the writer's pid.

The lock is ``fcntl.flock`` on ``RUN_FOLDER/.prunekit.lock``. The kernel drops it when
its process ends, however it ends (even ``kill -9``), so a lock left by a dead process
is stale by construction: the next run takes it over. A second process that finds the
lock held stops with :class:`~prunekit.errors.RunFolderBusyError` naming the pid in
the file. Within one process the lock is re-entrant. Locks are released by
:func:`release_run_folders` (the command line calls it when a command ends) or at exit.
"""

from __future__ import annotations

import atexit
import fcntl
import os
from pathlib import Path

from prunekit.errors import RunFolderBusyError, RunFolderError
from prunekit.utils.files import cannot_write, ensure_folder

LOCK_NAME = ".prunekit.lock"

_held: dict[Path, int] = {}  # resolved run folder → open file descriptor holding the lock


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return "?"
    return text or "?"


def lock_run_folder(folder: str | Path) -> Path:
    """Create ``folder`` if needed and take its lock for this process; return the folder.

    Raises :class:`RunFolderBusyError` when another live process holds it and
    :class:`RunFolderError` when the folder cannot be written.
    """
    folder = ensure_folder(folder)
    key = folder.resolve()
    if key in _held:
        return folder
    _check_enclosing_runs(folder, key)
    path = key / LOCK_NAME
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise cannot_write(path, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise RunFolderBusyError(
                f"run folder {folder} is in use by another prunekit run (pid {pid}); wait for "
                "it to finish, stop it, or give another --run-dir"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise RunFolderError(f"cannot lock run folder {folder}: {exc.strerror}") from None
        # the file may have been replaced between open and flock: lock the current one
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    except OSError as exc:
        os.close(fd)
        raise cannot_write(path, exc) from None
    _held[key] = fd
    return folder


def _check_enclosing_runs(folder: Path, key: Path) -> None:
    """A folder inside a run folder that another process holds (a cell, its
    ``finetune/``) is that run's to write: :class:`RunFolderBusyError` naming its pid."""
    for parent in key.parents:
        path = parent / LOCK_NAME
        if parent in _held or not path.is_file():
            continue
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            raise RunFolderBusyError(
                f"run folder {folder} lies inside {parent}, which is in use by another "
                f"prunekit run (pid {pid}); wait for it to finish, stop it, or give another "
                "--run-dir"
            ) from None
        except OSError:
            pass
        finally:
            os.close(fd)  # closing drops the probe's shared lock


def holds_lock(folder: str | Path) -> bool:
    """True when this process holds ``folder``'s lock."""
    return Path(folder).resolve() in _held


def release_run_folders() -> None:
    """Release every run-folder lock this process holds."""
    for key, fd in list(_held.items()):
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        os.close(fd)
        del _held[key]


atexit.register(release_run_folders)
