"""The command line: one-line errors with a non-zero exit, configs, train/eval/resume."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from prunekit.cli.main import main

SHARED_MNIST = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mnist"


def run_cli(capsys, *args):
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, f"expected a one-line error, got:\n{err}"
    assert "Traceback" not in err
    return lines[0]


def test_models_lists_registry(capsys):
    code, out, _ = run_cli(capsys, "models")
    assert code == 0 and "mlpnet" in out and "resnet20" in out


def test_datasets_lists_registry(capsys):
    code, out, _ = run_cli(capsys, "datasets")
    assert code == 0 and "mnist" in out and "imagefolder" in out


def test_unknown_model_is_one_line_error(capsys, tmp_path):
    code, _, err = run_cli(
        capsys,
        "train",
        "--model",
        "resnet-20",
        "--dataset",
        "synthetic",
        "--run-dir",
        str(tmp_path / "r"),
    )
    assert code != 0
    line = one_line_error(err)
    assert "resnet20" in line


def test_unknown_dataset_is_one_line_error(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "--dataset", "imagenett", "--run-dir", str(tmp_path))
    assert code != 0
    assert "mnist" in one_line_error(err)


def test_missing_data_files_name_the_files(capsys, tmp_path):
    code, _, err = run_cli(
        capsys,
        "train",
        "--dataset",
        "mnist",
        "--data-dir",
        str(tmp_path / "empty"),
        "--run-dir",
        str(tmp_path / "r"),
    )
    assert code != 0
    assert "train-images-idx3-ubyte" in one_line_error(err)


@pytest.mark.parametrize("sparsity", ["1.0", "-0.1", "1.5"])
def test_sparsity_outside_range(capsys, tmp_path, sparsity):
    code, _, err = run_cli(
        capsys,
        "prune-init",
        "--dataset",
        "synthetic",
        "--sparsities",
        sparsity,
        "--run-dir",
        str(tmp_path),
    )
    assert code != 0
    assert "[0, 1)" in one_line_error(err)


def test_corrupt_and_truncated_checkpoint(capsys, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage" * 10)
    code, _, err = run_cli(capsys, "eval", "--dataset", "synthetic", "--checkpoint", str(bad))
    assert code != 0 and "bad.pt" in one_line_error(err)
    good = tmp_path / "good.pt"
    torch.save({"fc1.weight": torch.zeros(3, 3)}, good)
    truncated = tmp_path / "trunc.pt"
    truncated.write_bytes(good.read_bytes()[:100])
    code, _, err = run_cli(capsys, "eval", "--dataset", "synthetic", "--checkpoint", str(truncated))
    assert code != 0 and "trunc.pt" in one_line_error(err)


def test_bad_yaml_key(capsys, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("epoch: 3\n")
    code, _, err = run_cli(capsys, "train", "--config", str(config))
    assert code != 0 and "epoch" in one_line_error(err)


def test_train_eval_resume_with_yaml_and_flags(capsys, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("dataset: synthetic\nepochs: 5\nbatch_size: 64\nlr: 0.05\n")
    run_dir = tmp_path / "run"
    code, out, err = run_cli(
        capsys,
        "train",
        "--config",
        str(config),
        "--epochs",
        "1",
        "--run-dir",
        str(run_dir),
        "--no-progress",
    )
    assert code == 0, err
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["config"]["epochs"] == 1 and saved["config"]["batch_size"] == 64
    assert saved["seed"] == 0 and "torch" in saved["versions"]
    # a second run into the same folder without --resume is refused, with --resume continues
    code, _, err = run_cli(capsys, "train", "--config", str(config), "--run-dir", str(run_dir))
    assert code != 0 and "--resume" in one_line_error(err)
    code, _, err = run_cli(
        capsys,
        "train",
        "--config",
        str(config),
        "--epochs",
        "2",
        "--run-dir",
        str(run_dir),
        "--resume",
        "--no-progress",
    )
    assert code == 0, err
    # resuming with another setting than epochs is refused, naming the setting
    code, _, err = run_cli(
        capsys,
        "train",
        "--config",
        str(config),
        "--epochs",
        "2",
        "--lr",
        "0.5",
        "--run-dir",
        str(run_dir),
        "--resume",
        "--no-progress",
    )
    assert code != 0 and "lr" in one_line_error(err) and "settings" in err
    log = (run_dir / "log.jsonl").read_text().strip().splitlines()
    assert [json.loads(line)["epoch"] for line in log] == [1, 2]
    code, out, err = run_cli(
        capsys,
        "eval",
        "--dataset",
        "synthetic",
        "--checkpoint",
        str(run_dir / "checkpoint.pt"),
    )
    assert code == 0, err
    assert json.loads(out)["top1"] >= 0


def test_console_script_exit_code(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "prunekit.cli.main", "train", "--model", "nope"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "nope" in result.stderr
