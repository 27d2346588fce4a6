"""prunekit report: validation beside test, and the stage-count plot."""

import json

from prunekit.pipelines.report import ReportConfig, run_report
from prunekit.reports.collect import collect_results
from prunekit.reports.plots import stage_counts_by_sparsity


def write_cell(root, method, sparsity, seed, stages, top1, val_top1, settings_hash):
    cell = root / method / f"sparsity-{sparsity}" / f"seed-{seed}" / f"settings-{settings_hash}"
    cell.mkdir(parents=True)
    record = {
        "model": "mlpnet",
        "method": method,
        "sparsity": sparsity,
        "seed": seed,
        "top1": top1,
        "val_top1": val_top1,
        "settings_hash": settings_hash,
    }
    if stages > 1:
        record["stages"] = stages
    (cell / "result.json").write_text(json.dumps(record))


def test_report_shows_validation_and_plots_accuracy_against_stage_count(tmp_path):
    for seed in (0, 1):
        write_cell(tmp_path, "cbs", 0.98, seed, 1, 50.0 + seed, 49.0 + seed, "a1")
        write_cell(tmp_path, "cbs", 0.98, seed, 4, 80.0 + seed, 79.0 + seed, "b2")
        write_cell(tmp_path, "cbs", 0.98, seed, 15, 89.0 + seed, 88.0 + seed, "c3")
    write_cell(tmp_path, "cbs", 0.9, 0, 15, 93.0, 93.5, "d4")  # one stage count only

    grouped = stage_counts_by_sparsity(collect_results(tmp_path))
    assert list(grouped) == [("mlpnet", "cbs", 0.98)]
    assert sorted(grouped[("mlpnet", "cbs", 0.98)]) == [1, 4, 15]
    assert [r["top1"] for r in grouped[("mlpnet", "cbs", 0.98)][15]] == [89.0, 90.0]

    out = run_report(ReportConfig(run_dir=str(tmp_path)))
    assert out["stages_plot"] == str(tmp_path / "report_stages.png")
    assert (tmp_path / "report_stages.png").stat().st_size > 0
    text = (tmp_path / "report.md").read_text()
    test_part, validation_part = text.split("val_top1:")
    assert "89.50 ± 0.71" in test_part and "88.50 ± 0.71" in validation_part
    assert "cbs, 15 stages" in validation_part


def test_report_without_stage_counts_writes_no_stage_plot(tmp_path):
    write_cell(tmp_path, "magnitude", 0.9, 0, 1, 70.0, 71.0, "e5")
    out = run_report(ReportConfig(run_dir=str(tmp_path)))
    assert out["stages_plot"] is None
    assert not (tmp_path / "report_stages.png").exists()


def test_a_folder_mixing_gradient_counts_names_them(tmp_path):
    write_cell(tmp_path, "cbs", 0.9, 0, 15, 93.0, 93.5, "f6")
    write_cell(tmp_path, "l0", 0.9, 0, 15, 92.0, 92.5, "g7")
    for path, m in (("cbs", 10000), ("l0", 1000)):
        result = next((tmp_path / path).rglob("result.json"))
        record = json.loads(result.read_text())
        result.write_text(json.dumps({**record, "fisher_samples_used": m}))
    methods = sorted(r["method"] for r in collect_results(tmp_path))
    assert methods == ["cbs, 15 stages, m = 10,000", "l0, 15 stages, m = 1,000"]
