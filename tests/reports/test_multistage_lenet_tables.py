"""The LeNet multi-stage table script: rules read from settings, repeated cells counted
once, and the validation split (never the test set) picking the stage rule."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "reproductions" / "multistage_lenet_tables.py"


@pytest.fixture(scope="module")
def tables():
    spec = importlib.util.spec_from_file_location("multistage_lenet_tables", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_cell(root: Path, *, seed, samples, first_order, top1, val, damp=0.01, count=15):
    settings = {
        "fisher": {"damp": damp, "first_order": first_order},
        "stages": {"count": count, "schedule": "geometric", "samples": samples},
    }
    digest = f"{samples}{first_order}{seed}{count}{damp}"
    cell = root / "cbs" / "sparsity-0.9" / f"seed-{seed}" / f"settings-{digest}"
    cell.mkdir(parents=True)
    (cell / "settings.json").write_text(json.dumps({"settings": settings}))
    record = {
        "method": "cbs", "sparsity": 0.9, "seed": seed, "settings_hash": digest,
        "mask_checksum": "a", "top1": top1, "val_top1": val, "dense_top1": 99.0,
        "gradient_seconds": 1.0, "prune_seconds": 2.0, "dead_weights_kept": 0,
    }
    (cell / "result.json").write_text(json.dumps(record))


def test_rules_are_read_from_the_settings(tables):
    assert tables.rule_of({"stages": {"count": 1}})[0] == tables.ONE
    new = {"stages": {"count": 15, "schedule": "exponential", "samples": "fresh"},
           "fisher": {"first_order": True}}
    assert tables.rule_of(new) == (tables.NEW, "15 exponential stages")
    old = {"stages": {"count": 15, "schedule": "geometric", "samples": "reuse"},
           "fisher": {"first_order": False}}
    assert tables.rule_of(old) == (tables.EARLIER, "15 geometric stages")
    mixed = {"stages": {"count": 15, "schedule": "geometric", "samples": "reuse"},
             "fisher": {"first_order": True}}
    assert tables.rule_of(mixed)[0] not in (tables.NEW, tables.EARLIER)


def test_a_cell_in_two_folders_counts_once(tables, tmp_path):
    for folder in ("a", "b"):
        write_cell(tmp_path / folder, seed=0, samples="fresh", first_order=True,
                   top1=90.0, val=91.0)
    records = tables.read_cells([tmp_path / "a", tmp_path / "b"])
    assert len(records) == 1


def test_validation_picks_the_rule_and_reports_its_test_figure(tables, tmp_path):
    # The earlier rule wins on validation but loses on test: the pick follows validation.
    for seed in (0, 1):
        write_cell(tmp_path, seed=seed, samples="fresh", first_order=True, top1=95.0, val=90.0)
        write_cell(tmp_path, seed=seed, samples="reuse", first_order=False, top1=94.0, val=92.0)
    # A configuration run on fewer seeds is left out of the comparison.
    write_cell(tmp_path, seed=0, samples="fresh", first_order=True, top1=99.0, val=99.9,
               damp=0.3)
    records = tables.read_cells([tmp_path])
    grouped = {}
    for record in records:
        grouped.setdefault(tables.row_key(record), {}).setdefault(
            record["sparsity"], []).append(record)
    (line,) = tables.validation_choice(grouped, [0.9])
    assert line == "| cbs | earlier, λ 0.01: 94.00 ± 0.00 (n=2), val 92.00 (of 2) |"
