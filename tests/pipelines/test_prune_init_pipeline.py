"""prune-init end to end on small synthetic data: files, exact counts, resume, collapse."""

import json

import pytest
import torch
from cell_paths import cell_dir

from prunekit.masks import load_mask
from prunekit.pipelines.configs import PruneInitConfig
from prunekit.pipelines.prune_init import LayerCollapseError, run_prune_init


def small_config(tmp_path, **overrides):
    values = dict(
        model="lenet_300_100",
        dataset="synthetic",
        dataset_kwargs={"num_samples": 256},
        methods=["snip", "grasp", "random"],
        sparsities=[0.9],
        seeds=[0],
        epochs=1,
        batch_size=64,
        samples_per_class=2,
        run_dir=str(tmp_path / "run"),
        progress=False,
    )
    values.update(overrides)
    return PruneInitConfig(**values)


def test_prune_init_writes_everything_and_does_not_redo(tmp_path):
    config = small_config(tmp_path)
    run_prune_init(config)
    root = tmp_path / "run"
    records = [json.loads(line) for line in (root / "results.jsonl").read_text().splitlines()]
    assert [r["method"] for r in records] == ["snip", "grasp", "random"]
    prunable = 784 * 300 + 300 * 100 + 100 * 10
    for record in records:
        assert record["removed"] == round(0.9 * prunable)
        folder = cell_dir(root / record["method"] / "sparsity-0.9" / "seed-0")
        for name in ("mask.pt", "sparsity.json", "log.jsonl", "final.json", "result.json"):
            assert (folder / name).exists()
        mask = load_mask(folder / "mask.pt")
        state = torch.load(folder / "checkpoint.pt", weights_only=True)["model"]
        for name, keep in mask.items():
            assert torch.all(state[name][~keep] == 0), "mask must hold after training"
    assert (root / "results.md").exists() and (root / "results.png").exists()
    assert json.loads((root / "config.json").read_text())["config"]["methods"] == [
        "snip",
        "grasp",
        "random",
    ]
    from prunekit.pipelines.report import ReportConfig, run_report

    assert run_report(ReportConfig(run_dir=str(root)))["runs"] == 3
    report = (root / "report.md").read_text()
    assert "| lenet_300_100 | grasp |" in report and (root / "report.png").exists()
    stamp = (
        (cell_dir(root / "grasp" / "sparsity-0.9" / "seed-0") / "result.json").stat().st_mtime_ns
    )
    run_prune_init(config)
    assert (
        cell_dir(root / "grasp" / "sparsity-0.9" / "seed-0") / "result.json"
    ).stat().st_mtime_ns == stamp


def test_same_seed_same_initialisation_for_every_method(tmp_path):
    run_prune_init(small_config(tmp_path, methods=["random", "magnitude"], epochs=1))
    masks = {
        m: load_mask(cell_dir(tmp_path / "run" / m / "sparsity-0.9" / "seed-0") / "mask.pt")
        for m in ("random", "magnitude")
    }
    assert not masks["random"].equal(masks["magnitude"])
    run_prune_init(small_config(tmp_path, methods=["random"], run_dir=str(tmp_path / "again")))
    again = load_mask(
        cell_dir(tmp_path / "again" / "random" / "sparsity-0.9" / "seed-0") / "mask.pt"
    )
    assert again.equal(masks["random"]), "same seed, same mask, bit for bit"


def test_layer_collapse_can_fail_the_run(tmp_path):
    # global magnitude at init removes the widest layer (smallest init scale) first: at
    # 99.5% the 1,331 kept weights all come from fc2 and fc3, so fc1 collapses.
    config = small_config(
        tmp_path,
        methods=["magnitude"],
        sparsities=[0.995],
        on_collapse="fail",
        model_kwargs={},
    )
    with pytest.raises(LayerCollapseError, match=r"fc1\.weight"):
        run_prune_init(config)
