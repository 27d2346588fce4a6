"""Collecting the result records of a run folder, finished parts only."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from prunekit.errors import ConfigError

logger = logging.getLogger(__name__)

_REQUIRED = ("method", "sparsity", "seed")


def _read_record(path: Path) -> dict | None:
    """The record in ``path``, or None (with a warning naming the file) when unreadable."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        logger.warning("WARNING: skipped %s: not readable JSON (%s)", path, type(exc).__name__)
        return None
    if (
        not isinstance(record, dict)
        or any(key not in record for key in _REQUIRED)
        or not all(isinstance(record[k], int | float) for k in ("sparsity", "seed"))
    ):
        logger.warning("WARNING: skipped %s: not a result record (needs %s)", path, _REQUIRED)
        return None
    return record


def collect_results(run_dir: str | Path) -> list[dict]:
    """Every ``result.json`` below ``run_dir`` (one per method, sparsity and seed), sorted.
    Corrupt files are skipped with a warning naming them."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"run folder {run_dir} is a file, not a folder; give the run folder")
    if not run_dir.is_dir():
        raise ConfigError(f"run folder {run_dir} does not exist")
    records = []
    for path in sorted(run_dir.rglob("result.json")):
        record = _read_record(path)
        if record is not None:
            records.append(record)
            _warn_not_finite(path, record)
    if not records:
        raise ConfigError(f"no finished result (result.json) below {run_dir}")
    return sorted(
        label_settings(records),
        key=lambda r: (str(r.get("model", "")), str(r["method"]), r["sparsity"], r["seed"]),
    )


def not_finite_fields(record: dict) -> list[str]:
    """Names of the numeric fields of ``record`` that are NaN or infinite."""
    return sorted(
        key
        for key, value in record.items()
        if isinstance(value, float) and not math.isfinite(value)
    )


def _warn_not_finite(path: Path, record: dict) -> None:
    bad = not_finite_fields(record)
    if bad:
        logger.warning(
            "WARNING: %s holds non-finite values (NaN/Inf) in %s: the tables show them "
            "as nan/inf and their means are not finite",
            path,
            ", ".join(bad),
        )


def label_settings(records: list[dict]) -> list[dict]:
    """Records of one method computed with different settings are never averaged
    together: when a method has cells of several settings hashes, its name gets the
    hash, ``cbs [3fa2c1]``. Stages, N:M patterns and (when a folder mixes them) the
    number of gradients m are named: ``cbs, 15 stages, m = 10,000``."""
    named = []
    for record in records:  # a pattern or stages are part of the method's name in tables
        record = {**record, "base_method": record.get("base_method", record["method"])}
        if record.get("pattern"):
            record = {**record, "method": f"{record['method']} ({record['pattern']})"}
        if record.get("stages"):
            record = {**record, "method": f"{record['method']}, {record['stages']} stages"}
        named.append(record)
    sample_counts = {r.get("fisher_samples_used") for r in named} - {None}
    if len(sample_counts) > 1:  # a folder mixing gradient counts names them
        named = [
            {**r, "method": f"{r['method']}, m = {r['fisher_samples_used']:,}"}
            if r.get("fisher_samples_used") is not None
            else r
            for r in named
        ]
    hashes: dict[str, set] = {}
    for record in named:
        hashes.setdefault(str(record["method"]), set()).add(record.get("settings_hash"))
    out = []
    for record in named:
        if len(hashes[str(record["method"])]) > 1:
            tag = (record.get("settings_hash") or "unhashed")[:6]
            record = {**record, "method": f"{record['method']} [{tag}]"}
        out.append(record)
    return out


def numeric_metrics(records: list[dict]) -> list[str]:
    """Names of the numeric fields of the records, the metrics a table can show."""
    names = {
        key
        for record in records
        for key, value in record.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
    return sorted(names - {"sparsity", "seed"})


def run_reference(run_dir: str | Path) -> dict:
    """The published figures stored in the run's ``config.json``, if any."""
    config = Path(run_dir) / "config.json"
    if not config.exists():
        return {}
    try:
        return json.loads(config.read_text()).get("config", {}).get("reference", {}) or {}
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        logger.warning("WARNING: %s is not readable: published figures left out", config)
        return {}
