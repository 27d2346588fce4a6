"""`prunekit bench` writes its three files (a smoke test: no timing is asserted)."""

import json

from prunekit.cli.main import main
from prunekit.deploy.bench import magnitude_masks
from prunekit.models import create_model


def test_bench_writes_markdown_json_and_plot(capsys, tmp_path):
    code = main(
        [
            "bench",
            "--models",
            "mlpnet",
            "--sparsities",
            "0.9",
            "--batch-sizes",
            "1",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--out-dir",
            str(tmp_path),
        ]
    )
    assert code == 0, capsys.readouterr().err
    payload = json.loads((tmp_path / "deploy_cpu.json").read_text())
    assert {c["layer"] for c in payload["crossovers"]} == {"Linear", "Conv2d"}
    (timing,) = payload["timings"]
    assert timing["model"] == "mlpnet" and timing["batch_size"] == 1
    assert "| mlpnet | 0.9 | 1 |" in (tmp_path / "deploy_cpu.md").read_text()
    assert (tmp_path / "deploy_cpu.png").stat().st_size > 0


def test_magnitude_masks_remove_the_smallest_weights_exactly():
    model = create_model("mlpnet")
    masks = magnitude_masks(model, [0.5, 0.98])
    total = masks[0.5].num_total
    assert masks[0.98].num_removed == round(0.98 * total)
    kept_min = min(model.get_parameter(n)[m].abs().min() for n, m in masks[0.5].items())
    removed_max = max(model.get_parameter(n)[~m].abs().max() for n, m in masks[0.5].items())
    assert kept_min >= removed_max
