"""Issue 10 lines whose fix is a correct result rather than an error: a corrupt
result.json skipped with a warning, ``--scheduler step`` usable, ``eval`` reading the test
split only, ``model.pt`` written atomically, best epoch never chosen on the test set.
The last tests pin the one-shot lines: stale results, duplicates, clamped sample counts
and an infinite dampening."""

from __future__ import annotations

import json

import pytest
import torch
from _reliability import QUICK, mlpnet_state, mnist_folder, run_cli, save


def test_report_skips_a_corrupt_result_naming_it(tmp_path, capsys, caplog):
    good = {"method": "magnitude", "sparsity": 0.5, "seed": 0, "top1": 90.0}
    for name, text in (("a", json.dumps(good)), ("b", '{"method": "magn')):
        (tmp_path / name).mkdir()
        (tmp_path / name / "result.json").write_text(text)
    code, out, err = run_cli(capsys, ["report", "--run-dir", tmp_path])
    assert code == 0 and "90.00" in out
    assert str(tmp_path / "b" / "result.json") in caplog.text and "Traceback" not in err


def test_step_scheduler_runs_with_its_default_step(tmp_path, capsys):
    argv = ["train", *QUICK, "--epochs", "3", "--lr", "0.1", "--scheduler", "step"]
    code, out, err = run_cli(capsys, [*argv, "--run-dir", tmp_path / "run"])
    assert code == 0, err
    rates = [json.loads(line)["lr"] for line in (tmp_path / "run" / "log.jsonl").open()]
    assert rates == pytest.approx([0.1, 0.01, 0.001])  # ×0.1 every third of the training


def test_eval_reads_only_the_test_split(tmp_path, capsys):
    folder = mnist_folder(tmp_path / "mnist", train=False)
    ckpt = save(mlpnet_state(), tmp_path / "w.pt")
    argv = ["eval", "--model", "mlpnet", "--data-dir", folder, "--checkpoint", ckpt]
    code, out, err = run_cli(capsys, argv)
    assert code == 0, err
    assert json.loads(out)["top1"] >= 0


def test_train_writes_model_atomically_and_no_test_chosen_best(tmp_path, capsys, monkeypatch):
    import prunekit.pipelines.train as train

    saved = []
    real = train.atomic_torch_save
    monkeypatch.setattr(
        train, "atomic_torch_save", lambda obj, path: saved.append(path) or real(obj, path)
    )
    argv = ["train", *QUICK, "--epochs", "2", "--validation-size", "10"]
    code, out, err = run_cli(capsys, [*argv, "--run-dir", tmp_path / "run"])
    assert code == 0, err
    assert saved == [tmp_path / "run" / "model.pt"]
    final = json.loads((tmp_path / "run" / "final.json").read_text())
    assert "best_test_top1" not in final and final["best_epoch"] in (1, 2)
    assert "best_val_top1" in final


# --- one-shot: run cells keyed by their settings, checked grids and sample counts -------------
def _prune(tmp_path, ckpt, *extra):
    return ["prune", *QUICK, "--checkpoint", ckpt, "--methods", "magnitude", "--run-dir",
            tmp_path / "run", *extra]  # fmt: skip


def test_rerun_with_another_checkpoint_is_not_served_old_results(tmp_path, capsys):
    first = save(mlpnet_state(), tmp_path / "a.pt")
    zeros = save({k: torch.zeros_like(v) for k, v in mlpnet_state().items()}, tmp_path / "b.pt")
    assert run_cli(capsys, _prune(tmp_path, first, "--sparsities", "0.5"))[0] == 0
    code, out, err = run_cli(capsys, _prune(tmp_path, zeros, "--sparsities", "0.5"))
    records = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").open()]
    # zero weights: uniform logits, loss ln(10); a reused result has the first run's loss
    assert code == 0, err
    assert all(r["loss"] == pytest.approx(2.302585) for r in records)


@pytest.mark.parametrize(
    "extra",
    [
        ["--sparsities", "0.9", "0.9"],
        ["--sparsities", "0.9", "--seeds", "0", "0"],
        ["--sparsities", "0.9", "--methods", "magnitude", "MAGNITUDE"],
    ],
)
def test_duplicates_refused(tmp_path, capsys, extra):
    ckpt = save(mlpnet_state(), tmp_path / "a.pt")
    code, _, err = run_cli(capsys, [*_prune(tmp_path, ckpt), *extra])
    assert code != 0 and "given twice" in err and "Traceback" not in err


def test_more_fisher_samples_than_training_samples_refused(tmp_path, capsys):
    ckpt = save(mlpnet_state(), tmp_path / "a.pt")
    argv = _prune(tmp_path, ckpt, "--sparsities", "0.5", "--fisher-samples", "100000")
    argv[argv.index("magnitude")] = "woodfisher"
    code, _, err = run_cli(capsys, argv)
    assert code != 0 and "are available" in err and "Traceback" not in err


def test_infinite_damp_refused(tmp_path, capsys):
    ckpt = save(mlpnet_state(), tmp_path / "a.pt")
    argv = _prune(tmp_path, ckpt, "--sparsities", "0.5", "--fisher-damp", "inf")
    argv[argv.index("magnitude")] = "woodfisher"
    code, _, err = run_cli(capsys, [*argv, "--fisher-samples", "8"])
    assert code != 0 and "Traceback" not in err and "damp" in err


# --- issue 18: results whose fix is a correct outcome -----------------------------------------
def _cells(run_dir):
    return sorted(p.parent.name for p in run_dir.rglob("settings.json") if p.parent != run_dir)


@pytest.mark.parametrize("command", ["prune", "prune-init"])
def test_changed_data_under_the_same_folder_is_not_served_old_results(tmp_path, capsys, command):
    folder = mnist_folder(tmp_path / "mnist", n_train=20, n_test=10)
    argv = [command, "--model", "mlpnet", "--data-dir", folder, "--methods", "magnitude",
            "--sparsities", "0.5", "--no-progress", "--run-dir", tmp_path / "run"]  # fmt: skip
    if command == "prune":
        argv += ["--checkpoint", save(mlpnet_state(), tmp_path / "w.pt")]
    else:
        argv += ["--epochs", "1", "--batch-size", "10", "--samples-per-class", "1"]
    assert run_cli(capsys, argv)[0] == 0
    assert run_cli(capsys, argv)[0] == 0 and len(_cells(tmp_path / "run")) == 1  # reused
    images = folder / "train-images-idx3-ubyte"
    raw = bytearray(images.read_bytes())
    raw[-1] ^= 0xFF  # one pixel of the last training image: same names, same sizes
    images.write_bytes(bytes(raw))
    code, _, err = run_cli(capsys, argv)
    assert code == 0, err
    assert len(_cells(tmp_path / "run")) == 2  # a new cell beside the old one


def test_export_overwrite_replaces_an_earlier_export(tmp_path, capsys):
    ckpt = save(mlpnet_state(), tmp_path / "w.pt")
    out = tmp_path / "m.safetensors"
    out.write_text("an earlier file")
    argv = ["export", ckpt, out, "--model", "mlpnet"]
    assert run_cli(capsys, argv)[0] != 0 and out.read_text() == "an earlier file"
    code, _, err = run_cli(capsys, [*argv, "--overwrite"])
    assert code == 0, err
    assert out.read_bytes()[:8] != b"an earli"


def test_report_warns_about_a_nan_result(tmp_path, capsys, caplog):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "result.json").write_text(
        '{"method": "cbs", "sparsity": 0.9, "seed": 0, "top1": NaN}'
    )
    code, out, _ = run_cli(capsys, ["report", "--run-dir", tmp_path])
    assert code == 0
    assert "not finite" in caplog.text and str(tmp_path / "a" / "result.json") in caplog.text
    assert "WARNING: not finite (NaN/Inf)" in (tmp_path / "report.md").read_text()


def _prune_mlpnet(tmp_path, *extra):
    ckpt = save(mlpnet_state(), tmp_path / "w.pt")
    return ["prune", *QUICK, "--checkpoint", ckpt, "--methods", "magnitude",
            "--run-dir", tmp_path / "run", *extra]  # fmt: skip


def test_prune_pattern_names_the_layers_left_dense(tmp_path, capsys, caplog):
    code, _, err = run_cli(capsys, _prune_mlpnet(tmp_path, "--pattern", "2:8"))
    assert code == 0, err
    assert "['fc3.weight'] cannot carry the 2:8 pattern and stay dense" in caplog.text


def test_prune_pattern_with_its_own_sparsity_runs(tmp_path, capsys):
    code, _, err = run_cli(
        capsys, _prune_mlpnet(tmp_path, "--pattern", "2:4", "--sparsities", "0.5")
    )
    assert code == 0, err


def test_prune_collapse_warns_by_default(tmp_path, capsys, caplog):
    code, _, err = run_cli(capsys, _prune_mlpnet(tmp_path, "--sparsities", "0.999999"))
    assert code == 0, err
    assert "(layer collapse)" in caplog.text
    record = json.loads((tmp_path / "run" / "results.jsonl").read_text().splitlines()[0])
    assert record["collapsed_layers"] == ["fc1.weight", "fc2.weight", "fc3.weight"]
