"""Run cells: a finished cell is reused only when its result-relevant settings match;
changed settings give a new cell and the new result, and config.json keeps every call."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from prunekit.errors import ConfigError
from prunekit.methods.oneshot import FisherSettings
from prunekit.models import create_model
from prunekit.pipelines.cells import open_cell, settings_hash
from prunekit.pipelines.configs import OneShotConfig, PruneInitConfig
from prunekit.pipelines.oneshot import run_oneshot
from prunekit.pipelines.prune_init import run_prune_init

SYNTHETIC = {"input_shape": [1, 28, 28], "num_samples": 400}


def records_of(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]


@pytest.fixture()
def oneshot_config(tmp_path):
    torch.manual_seed(0)
    checkpoint = tmp_path / "model.pt"
    torch.save(create_model("lenet_300_100").state_dict(), checkpoint)
    return OneShotConfig(
        model="lenet_300_100",
        dataset="synthetic",
        dataset_kwargs=SYNTHETIC,
        checkpoint=str(checkpoint),
        methods=["woodfisher"],
        sparsities=[0.9],
        seeds=[0],
        fisher=FisherSettings(samples=40, damp=1e-3),
        loss_samples=100,
        run_dir=str(tmp_path / "run"),
        progress=False,
    )


def test_rerun_with_changed_setting_gives_the_new_result(oneshot_config, tmp_path):
    run_oneshot(oneshot_config)
    (first,) = records_of(tmp_path / "run")
    changed = replace(oneshot_config, fisher=FisherSettings(samples=60, damp=0.1))
    run_oneshot(changed)
    (second,) = records_of(tmp_path / "run")
    assert second["settings_hash"] != first["settings_hash"]
    assert second["fisher_samples_used"] == 60
    assert second["predicted_loss_change"] != first["predicted_loss_change"]
    # both cells are kept, each with its own settings
    cells = sorted((tmp_path / "run" / "woodfisher" / "sparsity-0.9" / "seed-0").glob("settings-*"))
    assert len(cells) == 2
    stored = [json.loads((c / "settings.json").read_text())["settings"] for c in cells]
    assert sorted(s["fisher"]["damp"] for s in stored) == [0.001, 0.1]
    # config.json keeps the first call's settings
    config_json = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config_json["config"]["fisher"]["damp"] == 0.1
    assert config_json["previous_calls"][0]["config"]["fisher"]["damp"] == 0.001


def test_rerun_with_same_settings_reuses_the_cell(oneshot_config, tmp_path):
    run_oneshot(oneshot_config)
    (cell,) = (tmp_path / "run" / "woodfisher" / "sparsity-0.9" / "seed-0").glob("settings-*")
    before = (cell / "result.json").stat().st_mtime_ns
    # settings that cannot change the result do not make a new cell
    run_oneshot(replace(oneshot_config, progress=True, threads=1, reference={"x": {0.9: 1.0}}))
    assert (cell / "result.json").stat().st_mtime_ns == before
    assert len(list(cell.parent.glob("settings-*"))) == 1


def test_another_checkpoint_at_the_same_path_is_a_new_cell(oneshot_config, tmp_path):
    run_oneshot(oneshot_config)
    (first,) = records_of(tmp_path / "run")
    torch.manual_seed(1)
    torch.save(create_model("lenet_300_100").state_dict(), oneshot_config.checkpoint)
    run_oneshot(oneshot_config)
    (second,) = records_of(tmp_path / "run")
    assert second["dense_top1"] != first["dense_top1"] or second["top1"] != first["top1"]
    assert second["settings_hash"] != first["settings_hash"]


def test_duplicates_in_the_grid_are_refused(oneshot_config):
    for change in (
        {"sparsities": [0.9, 0.9]},
        {"seeds": [0, 0]},
        {"methods": ["magnitude", " MAGNITUDE"]},
        {"methods": ["cbs_s", "CBS-S"]},
    ):
        with pytest.raises(ConfigError, match="given twice"):
            run_oneshot(replace(oneshot_config, **change))


def test_more_fisher_samples_than_training_samples_is_an_error(oneshot_config):
    for fisher in (FisherSettings(samples=100000), FisherSettings(samples=50, batch_size=1000)):
        with pytest.raises(ConfigError, match="only 400 are available"):
            run_oneshot(replace(oneshot_config, fisher=fisher))


def test_prune_init_rerun_with_changed_training_gives_a_new_cell(tmp_path):
    config = PruneInitConfig(
        model="lenet_300_100",
        dataset="synthetic",
        dataset_kwargs=SYNTHETIC,
        methods=["magnitude"],
        sparsities=[0.5],
        seeds=[0],
        epochs=1,
        batch_size=100,
        samples_per_class=2,
        run_dir=str(tmp_path / "run"),
        progress=False,
    )
    run_prune_init(config)
    (first,) = records_of(tmp_path / "run")
    assert "best_top1" not in first and "best_test_top1" not in first
    run_prune_init(replace(config, lr=0.01))
    (second,) = records_of(tmp_path / "run")
    assert second["settings_hash"] != first["settings_hash"]
    assert second["top1"] != first["top1"] or second["loss"] != first["loss"]
    run_prune_init(replace(config, lr=0.01))  # same again: reused
    (third,) = records_of(tmp_path / "run")
    assert third == second


def test_cell_settings_hash_is_order_free_and_edits_are_detected(tmp_path):
    assert settings_hash({"a": 1, "b": [1, 2]}) == settings_hash({"b": [1, 2], "a": 1})
    cell = open_cell(tmp_path, ["m", "s", "seed-0"], {"damp": 0.001})
    stored = json.loads((cell.folder / "settings.json").read_text())
    stored["settings"]["damp"] = 0.5
    (cell.folder / "settings.json").write_text(json.dumps(stored))
    with pytest.raises(ConfigError, match="other settings"):
        open_cell(tmp_path, ["m", "s", "seed-0"], {"damp": 0.001})


def test_report_never_averages_cells_of_different_settings(oneshot_config, tmp_path):
    from prunekit.reports.collect import collect_results

    run_oneshot(replace(oneshot_config, seeds=[0, 1]))
    assert {r["method"] for r in collect_results(tmp_path / "run")} == {"woodfisher"}
    run_oneshot(replace(oneshot_config, fisher=FisherSettings(samples=60, damp=0.1)))
    records = collect_results(tmp_path / "run")
    assert len(records) == 3
    labels = sorted({r["method"] for r in records})  # seeds share a label, settings do not
    assert len(labels) == 2 and all(label.startswith("woodfisher") for label in labels)
    counts = {r["fisher_samples_used"] for r in records}
    if len(counts) > 1:  # the two settings differ in m, which the labels then name
        assert {label.rsplit(", m = ", 1)[-1] for label in labels} == {f"{m:,}" for m in counts}
    run_oneshot(replace(oneshot_config, fisher=FisherSettings(samples=60, damp=0.2)))
    same_m = [r for r in collect_results(tmp_path / "run") if r["fisher_samples_used"] == 60]
    assert len({r["method"] for r in same_m}) == 2  # same m, other λ: told apart by hash
    assert all("[" in r["method"] for r in same_m)


def test_multistage_cells_write_their_stages_and_hash_the_schedule(oneshot_config, tmp_path):
    from prunekit.methods.oneshot.multistage import StageSettings

    staged = replace(
        oneshot_config,
        methods=["woodfisher"],
        fisher=FisherSettings(samples=40, damp=1e-2, first_order=True),
        stages=StageSettings(count=3, schedule="linear"),
        validation_size=50,
    )
    run_oneshot(staged)
    (record,) = records_of(tmp_path / "run")
    assert record["stages"] == 3 and record["stage_sparsities"][-1] == 0.9
    assert record["removed"] == round(0.9 * record["prunable"])
    (cell,) = (tmp_path / "run" / "woodfisher" / "sparsity-0.9" / "seed-0").glob("settings-*")
    stages = json.loads((cell / "stages.json").read_text())
    assert [s["removed"] for s in stages] == [
        round(s * record["prunable"]) for s in record["stage_sparsities"]
    ]
    assert all("val_top1" in s["metrics"] for s in stages)
    run_oneshot(replace(staged, stages=StageSettings(count=2, schedule="linear")))
    assert len(list(cell.parent.glob("settings-*"))) == 2
