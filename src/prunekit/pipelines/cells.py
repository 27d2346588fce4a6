"""Run cells: one folder per (method, sparsity, seed) *and* the settings that decide
its result, so a finished cell is reused only when nothing that matters has changed.

A cell lives in ``<run_dir>/<method>/sparsity-<s>/seed-<n>/settings-<hash>/``, where
the hash covers the resolved, result-relevant settings (model, data, checkpoint
contents, method settings, training settings...) and is stored with them in the
cell's ``settings.json``. Re-running into the same run folder with the same settings
reuses the finished cell (or resumes an interrupted one); with changed settings it
starts a new cell beside the old one, which is kept. Settings that cannot change a
result (output folder, progress bars, threads, device, published reference figures,
the lists of methods/sparsities/seeds) are left out of the hash.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any

from prunekit.errors import ConfigError
from prunekit.pipelines.run_folder import library_versions, to_jsonable, write_json

# Fields of a command's config that never change a cell's result.
NOT_RESULT_RELEVANT = frozenset(
    {
        "run_dir",
        "progress",
        "threads",
        "device",
        "download",
        "reference",
        "methods",
        "sparsities",
        "seeds",
        "on_collapse",
        "resume",
        "tensorboard",
    }
)
TRAINING_FIELDS = frozenset(
    {
        "epochs",
        "optimizer",
        "lr",
        "momentum",
        "nesterov",
        "weight_decay",
        "scheduler",
        "milestones",
        "step_size",
        "gamma",
        "augment",
        "batch_size",
    }
)


# What tells the cells of one configuration apart (not part of ``settings_hash``).
CELL_COORDINATES = frozenset({"method", "sparsity", "seed"})


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's contents (a checkpoint's identity, whatever its path)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    return digest.hexdigest()


def settings_hash(settings: dict[str, Any]) -> str:
    """A short, stable hash of JSON-able settings (key order does not matter)."""
    text = json.dumps(to_jsonable(settings), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def result_settings(config: Any, drop: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The config's result-relevant settings: every field except the ones that cannot
    change a result and ``drop``."""
    values = asdict(config) if is_dataclass(config) else dict(config)
    return {k: v for k, v in values.items() if k not in NOT_RESULT_RELEVANT | drop}


@dataclass
class Cell:
    """A run cell: its folder, its settings and their hash."""

    folder: Path
    settings: dict[str, Any]
    hash: str

    @property
    def result_path(self) -> Path:
        return self.folder / "result.json"

    def finished(self) -> dict | None:
        """The cell's result record when it has finished, else ``None``."""
        if not self.result_path.exists():
            return None
        try:
            return json.loads(self.result_path.read_text())
        except (OSError, json.JSONDecodeError):
            return None  # an unreadable result is redone, never trusted

    def write_result(self, record: dict) -> dict:
        """Write ``result.json`` with ``settings_hash``: the hash of the settings less
        the method, sparsity and seed, the same for every cell of one configuration
        (reports never average cells of different ones)."""
        variant = {k: v for k, v in self.settings.items() if k not in CELL_COORDINATES}
        record = {**record, "settings_hash": settings_hash(variant)}
        write_json(self.result_path, record)
        return record


def open_cell(root: Path, parts: list[str], settings: dict[str, Any]) -> Cell:
    """The cell below ``root/parts...`` for ``settings``: created with its
    ``settings.json`` when new, checked against it when it exists."""
    digest = settings_hash(settings)
    folder = root.joinpath(*parts, f"settings-{digest}")
    stored = folder / "settings.json"
    if stored.exists():
        try:
            previous = json.loads(stored.read_text()).get("settings")
        except (OSError, json.JSONDecodeError):
            previous = None
        if previous is not None and settings_hash(previous) != digest:
            raise ConfigError(
                f"{folder} holds a cell of other settings (its settings.json was edited); "
                "remove that folder or use another --run-dir"
            )
    else:
        folder.mkdir(parents=True, exist_ok=True)
        write_json(
            stored,
            {"settings": settings, "hash": digest, "versions": library_versions()},
        )
    return Cell(folder, to_jsonable(settings), digest)


def changed_settings(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Names of the settings that differ between two settings dicts, sorted."""
    old, new = to_jsonable(old), to_jsonable(new)
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
