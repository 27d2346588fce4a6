"""Run folders: each run writes its resolved configuration, seed and versions beside its results."""

from __future__ import annotations

import functools
import json
import platform
import re
import subprocess
import sys
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

import prunekit
from prunekit.utils.files import atomic_write_text


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries that decide a run's numbers, and the
    prunekit source commit when it runs from a git checkout (``+modified`` when tracked
    files differ from it)."""
    versions = {
        "prunekit": prunekit.__version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cuda": torch.version.cuda or "none",
    }
    commit = source_commit()
    if commit is not None:
        versions["prunekit_commit"] = commit
    return versions


ARCHIVED_COMMIT_FILE = "_source_commit.txt"


def archived_commit(package: Path) -> str | None:
    """The commit that ``git archive`` wrote into the package's ``_source_commit.txt``
    (an ``export-subst`` file, see .gitattributes), or None: in a checkout the file
    holds the unexpanded placeholder, and it may be missing or unreadable."""
    try:
        text = (package / ARCHIVED_COMMIT_FILE).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if re.fullmatch(r"[0-9a-f]{40}", text) else None


@functools.cache
def source_commit() -> str | None:
    """The git commit of the checkout prunekit is imported from; outside a checkout, the
    commit of the ``git archive`` it was unpacked from, marked ``+archive`` (whether its
    files were edited since cannot be told); else None (an installed copy, no git, or
    any failure: it is information, never a reason to stop a run)."""
    package = Path(prunekit.__file__).resolve().parent
    archived = archived_commit(package)
    if archived is not None:  # unpacked from an archive, even inside another checkout
        return archived + "+archive"
    try:

        def git(*args: str) -> str:
            done = subprocess.run(
                ["git", "-C", str(package), *args],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            )
            return done.stdout.strip()

        if git("rev-parse", "--is-inside-work-tree") != "true":
            return None
        commit = git("rev-parse", "HEAD")
        modified = git("status", "--porcelain", "--untracked-files=no", "--", ".")
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+modified" if modified else "")


def to_jsonable(value: Any) -> Any:
    """Dataclasses, paths and tuples turned into plain JSON values."""
    if is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(asdict(value))
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float | int | str | bool) or value is None:
        return value
    return repr(value)


def write_json(path: Path, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(to_jsonable(data), indent=2) + "\n")


def write_jsonl(path: Path, records: list[dict]) -> Path:
    """One JSON object per line, written atomically."""
    return atomic_write_text(path, "".join(json.dumps(to_jsonable(r)) + "\n" for r in records))


def prepare_run_folder(run_dir: str | Path, command: str, config: Any, seed: int | None) -> Path:
    """Create ``run_dir`` and record this call in ``config.json``: its resolved config,
    seed, library versions, time and argv at the top, every earlier call of the same
    folder kept under ``previous_calls`` (oldest first)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "config.json"
    previous: list[dict] = []
    if path.exists():
        try:
            earlier = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            earlier = {"unreadable": str(path)}
        previous = earlier.pop("previous_calls", []) + [earlier]
    write_json(
        path,
        {
            "command": command,
            "config": config,
            "seed": seed,
            "versions": library_versions(),
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "argv": sys.argv,
            "previous_calls": previous,
        },
    )
    return run_dir


Section = tuple[str, str, int]  # (heading, metric, digits)


def summary_text(records: list[dict], sections: list[Section], reference: dict | None) -> str:
    """One markdown table per section whose metric some record has; the first section
    carries the published ``reference`` figures."""
    from prunekit.reports import results_table

    parts = []
    for index, (heading, metric, digits) in enumerate(sections):
        if index and not any(r.get(metric) is not None for r in records):
            continue
        table = results_table(
            records, metric=metric, reference=reference if index == 0 else None, digits=digits
        )
        parts.append(f"{heading}\n\n{table}\n")
    return "\n".join(parts)


def write_summary(
    root: Path,
    records: list[dict],
    sections: list[Section],
    title: str,
    reference: dict | None,
    x_axis: str = "sparsity",
) -> str:
    """``results.jsonl``, ``results.md`` (the sections' tables) and ``results.png`` (its
    ``x_axis``: ``reports.plots.X_AXES``) of a call; prints the tables and returns them."""
    from prunekit.reports.plots import plot_accuracy_vs_sparsity

    text = summary_text(records, sections, reference)
    write_jsonl(root / "results.jsonl", records)
    atomic_write_text(root / "results.md", text)
    plot_accuracy_vs_sparsity(records, root / "results.png", title=title, x_axis=x_axis)
    print(text)
    return text


def tensorboard_tables(root: Path, text: str, enabled: bool) -> None:
    """With ``--tensorboard``: the result tables as text in ``root/tensorboard``."""
    from prunekit.reports.tensorboard import FOLDER, tensorboard_log

    with tensorboard_log(root / FOLDER, enabled) as log:
        if log is not None:
            log.text("results", text)
