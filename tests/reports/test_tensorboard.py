"""``--tensorboard``: training writes each epoch's loss and accuracy, multi-stage pruning
each stage's sparsity, predicted loss change, training loss and validation accuracy, and
the result tables go in as text; read back with TensorBoard's EventAccumulator. Without
the flag nothing is written; without the package the flag stops with the install hint."""

import json
import sys

import pytest
import torch

from prunekit.cli.main import main

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import (  # noqa: E402
    EventAccumulator,
)

SYNTHETIC = "{input_shape: [1, 28, 28], num_samples: 120}"
DATA = ["--dataset", "synthetic", "--dataset-kwargs", SYNTHETIC, "--no-progress", "--threads", "1"]
TRAIN = ["train", "--model", "lenet_300_100", *DATA, "--epochs", "2", "--batch-size", "40"]


def events(folder):
    """``{tag: [(step, value)]}`` of the scalars, and the text tags, in ``folder``."""
    accumulator = EventAccumulator(str(folder))
    accumulator.Reload()
    scalars = {
        tag: [(e.step, e.value) for e in accumulator.Scalars(tag)]
        for tag in accumulator.Tags()["scalars"]
    }
    return scalars, accumulator.Tags()["tensors"]


def tensorboard_folders(root):
    return sorted(p.relative_to(root) for p in root.rglob("tensorboard") if p.is_dir())


def test_training_logs_each_epoch(tmp_path):
    run = tmp_path / "train"
    assert main([*TRAIN, "--run-dir", str(run), "--validation-size", "20", "--tensorboard"]) == 0
    scalars, _ = events(run / "tensorboard")
    for tag in ("train/loss", "train/top1", "test/loss", "test/top1", "val/top1", "train/lr"):
        assert [step for step, _ in scalars[tag]] == [1, 2], tag
    last = json.loads((run / "log.jsonl").read_text().splitlines()[-1])
    assert scalars["test/top1"][-1][1] == pytest.approx(last["test_top1"])
    assert scalars["train/loss"][-1][1] == pytest.approx(last["train_loss"])


def test_multistage_pruning_logs_stages_finetuning_and_tables(tmp_path):
    torch.manual_seed(0)
    from prunekit.models import create_model

    torch.save(create_model("mlpnet").state_dict(), tmp_path / "mlpnet.pt")
    run = tmp_path / "prune"
    argv = ["prune", "--model", "mlpnet", *DATA, "--checkpoint", str(tmp_path / "mlpnet.pt"),
            "--methods", "woodfisher", "--sparsities", "0.9", "--fisher-samples", "20",
            "--stages-count", "3", "--validation-size", "20", "--epochs", "1",
            "--run-dir", str(run)]  # fmt: skip
    assert main([*argv, "--tensorboard"]) == 0
    cells = [p.parent for p in run.rglob("stages.json")]
    assert len(cells) == 1
    scalars, _ = events(cells[0] / "tensorboard")
    for tag in ("stages/sparsity", "stages/predicted_loss_change", "stages/training_loss",
                "stages/val_top1"):  # fmt: skip
        assert [step for step, _ in scalars[tag]] == [0, 1, 2], tag  # as in stages.json
    assert scalars["stages/sparsity"][-1][1] == pytest.approx(0.9)
    assert [step for step, _ in scalars["test/top1"]] == [1]  # the fine-tuning epoch
    _, texts = events(run / "tensorboard")
    assert any(tag.startswith("results") for tag in texts)


def test_nothing_is_written_without_the_flag(tmp_path):
    assert main([*TRAIN, "--epochs", "1", "--run-dir", str(tmp_path / "train")]) == 0
    assert tensorboard_folders(tmp_path) == []


def test_the_flag_without_tensorboard_names_the_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard fails
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    run = tmp_path / "train"
    assert main([*TRAIN, "--run-dir", str(run), "--tensorboard"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("prunekit train: error: --tensorboard needs the tensorboard package")
    assert "pip install 'prunekit[tensorboard]'" in err and len(err.splitlines()) == 1
    assert not run.exists()  # stopped before any work
