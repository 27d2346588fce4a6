"""`prunekit export` from a run cell and from a checkpoint; `eval` of the export, --sparse."""

import json

import torch

from prunekit.cli.main import main
from prunekit.deploy import load_exported, read_exported
from prunekit.masks import save_mask


def _run(capsys, *args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _cell(masked_model, tmp_path, weights_name="pruned_model.pt"):
    """A cell two levels below the config.json, as a settings-hash level would put it."""
    model, mask = masked_model("lenet_300_100", 0.98)
    root = tmp_path / "run"
    cell = root / "magnitude" / "abc123" / "sparsity-0.98" / "seed-0"
    cell.mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({"config": {"model": "lenet_300_100"}}))
    save_mask(mask, cell / "mask.pt")
    torch.save(model.state_dict(), cell / weights_name)
    return model, mask, cell


def test_export_a_cell_then_eval_it_dense_and_sparse(capsys, masked_model, tmp_path):
    model, mask, cell = _cell(masked_model, tmp_path)
    out = tmp_path / "lenet.safetensors"
    code, stdout, err = _run(capsys, "export", cell, out)
    assert code == 0, err
    report = json.loads(stdout)
    assert report["bytes"] == out.stat().st_size and report["bytes"] < report["dense_bytes"] / 10
    assert read_exported(out).mask.equal(mask)
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(load_exported(out)(x), model(x))
    results = []
    for extra in ([], ["--sparse"]):
        code, stdout, err = _run(
            capsys, "eval", "--checkpoint", out, "--dataset", "synthetic", "--no-progress", *extra
        )
        assert code == 0, err
        results.append(json.loads(stdout))
    assert results[1]["sparse_layers"] == ["fc1", "fc2", "fc3"]
    assert abs(results[0]["loss"] - results[1]["loss"]) < 1e-4
    assert results[0]["top1"] == results[1]["top1"]


def test_export_a_checkpoint_file_with_model_and_mask_flags(capsys, masked_model, tmp_path):
    model, mask, cell = _cell(masked_model, tmp_path, weights_name="weights.pt")
    out = tmp_path / "out.safetensors"
    code, _, err = _run(
        capsys,
        "export",
        cell / "weights.pt",
        out,
        "--model",
        "lenet_300_100",
        "--mask",
        cell / "mask.pt",
    )
    assert code == 0, err
    assert read_exported(out).mask.equal(mask)


def test_export_errors_are_one_line(capsys, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = _run(capsys, "export", empty, tmp_path / "o.safetensors", "--model", "mlpnet")
    assert code == 2 and "holds none of" in err and len(err.strip().splitlines()) == 1
    code, _, err = _run(capsys, "export")
    assert code == 2 and "usage" in err
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
    code, _, err = _run(capsys, "eval", "--checkpoint", bad, "--dataset", "synthetic")
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_prune_init_with_a_pattern_then_export_its_cell(capsys, tmp_path):
    from prunekit.masks import check_nm, load_mask
    from prunekit.pipelines.configs import PruneInitConfig
    from prunekit.pipelines.prune_init import run_prune_init

    config = PruneInitConfig(
        model="mlpnet",
        dataset="synthetic",
        dataset_kwargs={"num_samples": 128},
        methods=["snip"],
        pattern="2:4",
        epochs=1,
        batch_size=64,
        samples_per_class=2,
        run_dir=str(tmp_path / "run"),
        progress=False,
    )
    run_prune_init(config)
    (cell,) = (tmp_path / "run" / "snip" / "pattern-2of4" / "seed-0").glob("settings-*")
    mask = load_mask(cell / "mask.pt")
    assert check_nm(mask, 2, 4) and mask.sparsity == 0.5
    out = tmp_path / "snip24.safetensors"
    code, _, err = _run(capsys, "export", cell, out)
    assert code == 0, err
    trained = torch.load(cell / "checkpoint.pt", weights_only=True)["model"]
    rebuilt = load_exported(out)
    assert all(torch.equal(rebuilt.state_dict()[k], v) for k, v in trained.items())
