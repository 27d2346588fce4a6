"""Collecting the result records of a run folder, finished parts only."""

from __future__ import annotations

import json
from pathlib import Path

from prunekit.errors import ConfigError


def collect_results(run_dir: str | Path) -> list[dict]:
    """Every ``result.json`` below ``run_dir`` (one per method, sparsity and seed), sorted."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run folder {run_dir} does not exist")
    records = [json.loads(p.read_text()) for p in sorted(run_dir.rglob("result.json"))]
    if not records:
        raise ConfigError(f"no finished result (result.json) below {run_dir}")
    return sorted(
        label_settings(records),
        key=lambda r: (r.get("model", ""), r["method"], r["sparsity"], r["seed"]),
    )


def label_settings(records: list[dict]) -> list[dict]:
    """Records of one method computed with different settings are never averaged
    together: when a method has cells of several settings hashes, its name gets the
    hash, ``cbs [3fa2c1]``."""
    hashes: dict[str, set] = {}
    for record in records:
        hashes.setdefault(record["method"], set()).add(record.get("settings_hash"))
    out = []
    for record in records:
        if len(hashes[record["method"]]) > 1:
            tag = (record.get("settings_hash") or "unhashed")[:6]
            record = {**record, "method": f"{record['method']} [{tag}]"}
        out.append(record)
    return out


def run_reference(run_dir: str | Path) -> dict:
    """The published figures stored in the run's ``config.json``, if any."""
    config = Path(run_dir) / "config.json"
    if not config.exists():
        return {}
    return json.loads(config.read_text()).get("config", {}).get("reference", {}) or {}
