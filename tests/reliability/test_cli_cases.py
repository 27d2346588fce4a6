"""Issue 10 through the command line: each bad input stops with one clear line, a non-zero
exit, no traceback, and the files written before the call are left exactly as they were.

One case per line of the issue; a case's setup writes what it needs below ``tmp`` and
returns the argv (and may patch the file system through ``mp`` to simulate a full or
read-only disk).
"""

from __future__ import annotations

import errno
import json
import os
import struct
from pathlib import Path

import pytest
import torch
from _reliability import (
    QUICK,
    SYNTHETIC,
    Evil,
    assert_unchanged,
    error_line,
    export_file,
    hashes,
    mlpnet_state,
    mnist_folder,
    run_cli,
    save,
    temp_files_on_a_full_disk,
)

import prunekit.utils.files as files

CASES: dict[str, tuple] = {}


def case(expected: str):
    """Register ``setup(tmp, mp, capsys) -> argv``; the error line must contain ``expected``."""

    def register(setup):
        CASES[setup.__name__] = (setup, expected)
        return setup

    return register


def _ckpt(tmp: Path, **changes) -> Path:
    return save(mlpnet_state(**changes), tmp / "in" / "weights.pt")


def _eval(tmp: Path, checkpoint: Path, *extra) -> list:
    return ["eval", *QUICK, "--checkpoint", checkpoint, *extra]


def _train(tmp: Path, *extra) -> list:
    return ["train", *QUICK, "--epochs", "1", "--run-dir", tmp / "run", *extra]


def _mnist_eval(tmp: Path, folder: Path) -> list:
    ckpt = save(mlpnet_state(), tmp / "in" / "w.pt")
    return ["eval", "--model", "mlpnet", "--data-dir", folder, "--checkpoint", ckpt]


# --- NaN / Inf ---------------------------------------------------------------------------
@case("not finite")
def nan_weights_eval(tmp, mp, capsys):
    return _eval(tmp, _ckpt(tmp, **{"fc1.weight": torch.full((40, 784), float("nan"))}))


@case("not finite")
def inf_weights_prune(tmp, mp, capsys):
    ckpt = _ckpt(tmp, **{"fc2.weight": torch.full((20, 40), float("inf"))})
    return ["prune", *QUICK, "--checkpoint", ckpt, "--methods", "magnitude",
            "--sparsities", "0.5", "--run-dir", tmp / "run"]  # fmt: skip


@case("not finite")
def nan_init_checkpoint_train(tmp, mp, capsys):
    ckpt = _ckpt(tmp, **{"fc3.weight": torch.full((10, 20), float("nan"))})
    return _train(tmp, "--init-checkpoint", ckpt)


@case("test set of 'mnist' holds no samples")
def empty_test_set(tmp, mp, capsys):
    return _mnist_eval(tmp, mnist_folder(tmp / "mnist", n_test=0))


@case("training set of 'mnist' holds no samples")
def zero_training_images(tmp, mp, capsys):
    folder = mnist_folder(tmp / "mnist", n_train=0)
    return ["train", "--model", "mlpnet", "--data-dir", folder, "--run-dir", tmp / "run"]


@case("weight_decay must be a finite number")
def nan_weight_decay(tmp, mp, capsys):
    return _train(tmp, "--weight-decay", "nan")


@case("lr must be a finite number")
def inf_learning_rate(tmp, mp, capsys):
    return _train(tmp, "--lr", "inf")


# --- masks and unsafe files ------------------------------------------------------------
@case("values other than 0/1")
def float_mask(tmp, mp, capsys):
    mask = {"fc1.weight": torch.full((40, 784), 0.3)}
    return _train(tmp, "--mask", save(mask, tmp / "in" / "mask.pt"))


@case("not floating-point")
def integer_weights(tmp, mp, capsys):
    state = {k: v.to(torch.int64) for k, v in mlpnet_state().items()}
    return _eval(tmp, save(state, tmp / "in" / "int.pt"))


@case("refused for safety")
def malicious_mask(tmp, mp, capsys):
    return _train(tmp, "--mask", save({"fc1.weight": Evil()}, tmp / "in" / "mask.pt"))


@case("refused for safety")
def malicious_resume_checkpoint(tmp, mp, capsys):
    save({"model": Evil()}, tmp / "run" / "checkpoint.pt")
    return _train(tmp, "--resume")


# --- report ----------------------------------------------------------------------------
def _result(folder: Path, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "result.json").write_text(text)


@case("available: ")
def report_unknown_metric(tmp, mp, capsys):
    record = {"method": "magnitude", "sparsity": 0.5, "seed": 0, "top1": 90.0}
    _result(tmp / "run" / "magnitude" / "s", json.dumps(record))
    return ["report", "--run-dir", tmp / "run", "--metric", "foo"]


@case("no finished result")
def report_only_corrupt_results(tmp, mp, capsys):
    _result(tmp / "run" / "magnitude" / "s", '{"method": "magn')
    return ["report", "--run-dir", tmp / "run"]


# --- run folder not writable -------------------------------------------------------------
@case("is a file, not a folder")
def run_dir_is_a_file(tmp, mp, capsys):
    (tmp / "taken").write_text("keep me")
    return _train(tmp, "--run-dir", tmp / "taken")


@case("cannot write")
def run_dir_under_a_file(tmp, mp, capsys):
    (tmp / "taken").write_text("keep me")
    return _train(tmp, "--run-dir", tmp / "taken" / "run")


@case("Read-only file system")
def read_only_file_system(tmp, mp, capsys):
    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    mp.setattr(files.tempfile, "mkstemp", refuse)
    return _train(tmp)


@case("permission denied")
def no_permission(tmp, mp, capsys):
    (tmp / "run").mkdir()
    mp.setattr(files.os, "access", lambda *args, **kwargs: False)
    return _train(tmp)


@case("No space left on device")
def disk_full_oserror(tmp, mp, capsys):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    mp.setattr(files.os, "replace", full)
    return _train(tmp)


@case("inline_container.cc")
def disk_full_torch_save(tmp, mp, capsys):
    def full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 0")

    mp.setattr(torch, "save", full)
    return _train(tmp)


# --- shape mismatches ----------------------------------------------------------------------
@case("shape mismatches")
def wrong_shapes_eval(tmp, mp, capsys):
    return _eval(tmp, _ckpt(tmp, **{"fc1.weight": torch.zeros(40, 100)}))


@case("shape mismatches")
def wrong_shapes_prune(tmp, mp, capsys):
    ckpt = _ckpt(tmp, **{"fc2.weight": torch.zeros(7, 40)})
    return ["prune", *QUICK, "--checkpoint", ckpt, "--methods", "magnitude",
            "--sparsities", "0.5", "--run-dir", tmp / "run"]  # fmt: skip


@case("shape mismatches")
def wrong_shapes_init_checkpoint(tmp, mp, capsys):
    return _train(tmp, "--init-checkpoint", _ckpt(tmp, **{"fc3.weight": torch.zeros(10, 3)}))


@case("another model")
def resume_with_another_model(tmp, mp, capsys):
    assert run_cli(capsys, _train(tmp))[0] == 0
    return ["train", "--model", "lenet_300_100", *SYNTHETIC, "--no-progress", "--epochs", "2",
            "--batch-size", "20", "--run-dir", tmp / "run", "--resume"]  # fmt: skip


@case("do not fit")
def resnet20_on_mnist(tmp, mp, capsys):
    return ["train", "--model", "resnet20", "--dataset", "mnist", "--data-dir", tmp / "none"]


@case("do not fit")
def mlpnet_on_cifar(tmp, mp, capsys):
    return ["train", "--model", "mlpnet", "--dataset", "cifar10", "--data-dir", tmp / "none"]


@case("MNIST images are 28×28")
def mnist_files_of_32x32_images(tmp, mp, capsys):
    return _mnist_eval(tmp, mnist_folder(tmp / "mnist", size=32))


# --- bad numbers -----------------------------------------------------------------------------
@case("batch_size must be an integer >= 1")
def batch_size_zero(tmp, mp, capsys):
    return _train(tmp, "--batch-size", "0")


@case("batch_size must be an integer >= 1")
def batch_size_negative(tmp, mp, capsys):
    return _train(tmp, "--batch-size", "-5")


@case("test_batch_size must be an integer >= 1")
def eval_batch_size_zero(tmp, mp, capsys):
    return _eval(tmp, _ckpt(tmp), "--test-batch-size", "0")


@case("threads must be an integer >= 1")
def threads_negative(tmp, mp, capsys):
    return _train(tmp, "--threads", "-1")


@case("threads must be an integer >= 1")
def threads_zero(tmp, mp, capsys):
    return _train(tmp, "--threads", "0")


@case("seeds must be integers in [0, 2**63 - 1]")
def seed_beyond_64_bits(tmp, mp, capsys):
    return _train(tmp, "--seed", str(2**64))


@case("seeds must be integers in [0, 2**63 - 1]")
def prune_init_seeds_beyond_64_bits(tmp, mp, capsys):
    return ["prune-init", *QUICK, "--seeds", str(2**70), "--run-dir", tmp / "run"]


@case("model_kwargs num_classes=5")
def model_kwargs_num_classes(tmp, mp, capsys):
    return _train(tmp, "--model-kwargs", "{num_classes: 5}")


@case("num_samples >= 1")
def synthetic_zero_samples(tmp, mp, capsys):
    return ["train", "--model", "mlpnet", "--dataset", "synthetic",
            "--dataset-kwargs", "{num_samples: 0}", "--run-dir", tmp / "run"]  # fmt: skip


@case("num_samples >= 1")
def synthetic_negative_samples(tmp, mp, capsys):
    return ["train", "--model", "mlpnet", "--dataset", "synthetic",
            "--dataset-kwargs", "{num_samples: -3}", "--run-dir", tmp / "run"]  # fmt: skip


@case("is truncated")
def idx_header_overflow(tmp, mp, capsys):
    folder = mnist_folder(tmp / "mnist")
    header = struct.pack(">HBB3I", 0, 0x08, 3, 2**31, 2**31, 28)
    (folder / "t10k-images-idx3-ubyte").write_bytes(header + bytes(28 * 28))
    return _mnist_eval(tmp, folder)


# --- configs -----------------------------------------------------------------------------------
@case("is not UTF-8")
def yaml_not_utf8(tmp, mp, capsys):
    (tmp / "c.yaml").write_bytes(b"model: mlpnet\nlr: 0.1 # \xff\xfe caf\xe9\n")
    return ["train", "--config", tmp / "c.yaml"]


@case("line 3")
def yaml_invalid_with_line(tmp, mp, capsys):
    (tmp / "c.yaml").write_text("model: mlpnet\nepochs: 2\nlr: 0.1: 3\nseed: 0\n")
    return ["train", "--config", tmp / "c.yaml"]


# --- issue 18: export, exports evaluated, settings, messages ----------------------------
def _cell(tmp: Path) -> Path:
    """A finished-looking run cell of a prune run: settings.json, mask.pt, weights."""
    cell = tmp / "run" / "magnitude" / "sparsity-0.5" / "seed-0" / "settings-0123456789ab"
    save(mlpnet_state(), cell / "pruned_model.pt")
    save({"fc1.weight": torch.ones(40, 784, dtype=torch.bool)}, cell / "mask.pt")
    (cell / "settings.json").write_text('{"settings": {"method": "magnitude"}, "hash": "x"}')
    return cell


@case("already exists: add --overwrite")
def export_over_an_existing_file(tmp, mp, capsys):
    (tmp / "keep.safetensors").write_text("an unrelated file")
    return ["export", _ckpt(tmp), tmp / "keep.safetensors", "--model", "mlpnet"]


@case("is the export's own input")
def export_onto_its_source(tmp, mp, capsys):
    ckpt = _ckpt(tmp)
    return ["export", ckpt, ckpt, "--model", "mlpnet", "--overwrite"]


@case("is the export's own input")
def export_onto_its_cells_mask(tmp, mp, capsys):
    cell = _cell(tmp)
    return ["export", cell, cell / "mask.pt", "--model", "mlpnet", "--overwrite"]


@case("lies inside the run cell")
def export_onto_another_cells_mask(tmp, mp, capsys):
    cell = _cell(tmp)
    return ["export", _ckpt(tmp), cell / "mask.pt", "--model", "mlpnet", "--overwrite"]


@case("lies inside the run cell")
def export_into_a_cells_finetune_folder(tmp, mp, capsys):
    cell = _cell(tmp)
    return ["export", cell, cell / "finetune" / "x.safetensors", "--model", "mlpnet"]


def _integer_values(tensors, layout):
    tensors["kept.fc1.weight"] = (tensors["kept.fc1.weight"] * 100).to(torch.int32)


def _negative_shape(tensors, layout):
    layout["fc1.weight"]["shape"] = [-40, 784]


@case("not floating-point")
def eval_export_of_integer_values(tmp, mp, capsys):
    return _eval(tmp, export_file(tmp / "in" / "int.safetensors", _integer_values))


@case("impossible shape (-40, 784)")
def eval_export_of_negative_shape(tmp, mp, capsys):
    return _eval(tmp, export_file(tmp / "in" / "neg.safetensors", _negative_shape))


@case("do not fit model MLPNet")
def eval_export_on_other_data_names_its_model(tmp, mp, capsys):
    exported = export_file(tmp / "in" / "mlpnet.safetensors")
    return ["eval", "--dataset", "cifar10", "--data-dir", tmp / "none", "--checkpoint", exported]


@case("is a file, not a folder")
def report_run_dir_is_a_file(tmp, mp, capsys):
    (tmp / "results.json").write_text("{}")
    return ["report", "--run-dir", tmp / "results.json"]


@case("read-only file system (EROFS)")
def read_only_mount(tmp, mp, capsys):
    class ReadOnly:
        f_flag, f_bavail = os.ST_RDONLY, 1000

    (tmp / "run").mkdir()
    mp.setattr(files.os, "access", lambda *args, **kwargs: False)
    mp.setattr(files.os, "statvfs", lambda path: ReadOnly())
    return _train(tmp)


@case("No space left on device (ENOSPC)")
def disk_full_through_torch_save(tmp, mp, capsys):
    temp_files_on_a_full_disk(mp, files, suffix=".pt.")
    return _train(tmp)


def _prune_args(tmp: Path, method: str, *extra) -> list:
    return ["prune", *QUICK, "--checkpoint", _ckpt(tmp), "--methods", method,
            "--sparsities", "0.5", "--run-dir", tmp / "run", *extra]  # fmt: skip


@case("update scales must be >= 0")
def negative_update_scale(tmp, mp, capsys):
    return _prune_args(tmp, "woodfisher", "--update-scale", "-1")


@case("update scales must be >= 0")
def negative_scale_in_the_grid(tmp, mp, capsys):
    return _prune_args(tmp, "woodfisher", "--update-scale-grid", "1", "-0.5")


@case("l0 tol must be a finite number >= 0, got nan")
def l0_tol_nan(tmp, mp, capsys):
    return _prune_args(tmp, "l0", "--l0-tol", "nan")


@case("l0 tol must be a finite number >= 0, got inf")
def l0_tol_inf(tmp, mp, capsys):
    return _prune_args(tmp, "l0", "--l0-tol", "inf")


@case("l0 tol must be a finite number >= 0, got -1")
def l0_tol_negative(tmp, mp, capsys):
    return _prune_args(tmp, "l0", "--l0-tol", "-1")


@case("must be finite and positive there")
def fisher_damp_infinite_in_float32(tmp, mp, capsys):
    return _prune_args(tmp, "woodfisher", "--fisher-damp", "1e300")


@case("stages count 1000000 is too large")
def stages_count_a_million_exponential(tmp, mp, capsys):
    return _prune_args(tmp, "magnitude", "--stages-count", "1000000")


@case("stages count 1000000 is too large")
def stages_count_a_million_geometric(tmp, mp, capsys):
    return _prune_args(tmp, "magnitude", "--stages-count", "1000000",
                       "--stages-schedule", "geometric")  # fmt: skip


@case("every stage must remove at least one weight")
def more_stages_than_weights_to_remove(tmp, mp, capsys):
    return ["prune", *QUICK, "--checkpoint", _ckpt(tmp), "--methods", "magnitude",
            "--sparsities", "0.0001", "--stages-count", "900", "--stages-schedule", "linear",
            "--run-dir", tmp / "run"]  # fmt: skip


@case("do not increase")
def exponential_stages_that_stall(tmp, mp, capsys):
    return _prune_args(tmp, "magnitude", "--stages-count", "900")


# --- issue 18: the grid of prune and prune-init, collapse, locks, bench --------------------
def _init_args(tmp: Path, *extra) -> list:
    return ["prune-init", *QUICK, "--methods", "magnitude", "--epochs", "1",
            "--run-dir", tmp / "run", *extra]  # fmt: skip


def _prune_grid(tmp: Path, *extra) -> list:
    return ["prune", *QUICK, "--checkpoint", _ckpt(tmp), "--run-dir", tmp / "run", *extra]


@case("the 2:1000 pattern fits no prunable layer")
def prune_pattern_that_fits_no_layer(tmp, mp, capsys):
    return _prune_grid(tmp, "--methods", "magnitude", "--pattern", "2:1000")


@case("the 2:1000 pattern fits no prunable layer")
def prune_init_pattern_that_fits_no_layer(tmp, mp, capsys):
    return _init_args(tmp, "--pattern", "2:1000")


@case("--sparsities 0.9 0.95 cannot be run with it")
def prune_pattern_beside_sparsities(tmp, mp, capsys):
    return _prune_grid(tmp, "--methods", "magnitude", "--pattern", "2:4",
                       "--sparsities", "0.9", "0.95")  # fmt: skip


@case("--sparsities 0.9 0.95 cannot be run with it")
def prune_init_pattern_beside_sparsities(tmp, mp, capsys):
    return _init_args(tmp, "--pattern", "2:4", "--sparsities", "0.9", "0.95")


@case("sparsities 0.9 and 0.9000001 both remove 29124 of the 32360")
def prune_sparsities_of_the_same_count(tmp, mp, capsys):
    return _prune_grid(tmp, "--methods", "magnitude", "--sparsities", "0.9", "0.9000001")


@case("both remove 29124 of the 32360 prunable weights")
def prune_init_sparsities_of_the_same_count(tmp, mp, capsys):
    return _init_args(tmp, "--sparsities", "0.9", "0.9000001")


@case("methods 'woodfisher' and 'obs+woodfisher' are the same method")
def prune_woodfisher_beside_its_pair(tmp, mp, capsys):
    return _prune_grid(tmp, "--methods", "woodfisher", "obs+woodfisher", "--sparsities", "0.5")


@case("methods 'cbs' and 'cbs_s+cbs_u' are the same method")
def prune_cbs_beside_its_pair(tmp, mp, capsys):
    return _prune_grid(tmp, "--methods", "cbs", "cbs_s+cbs_u", "--sparsities", "0.5")


@case("methods 'l0' and 'l0+cbs_u' are the same method")
def prune_l0_beside_its_pair(tmp, mp, capsys):
    return _prune_grid(tmp, "--methods", "l0", "l0+cbs_u", "--sparsities", "0.5")


@case("(layer collapse); use --on-collapse warn")
def prune_removing_every_weight(tmp, mp, capsys):
    return _prune_grid(tmp, "--methods", "magnitude", "--sparsities", "0.999999",
                       "--on-collapse", "fail")  # fmt: skip


def _hold(folder, ready, done):
    from prunekit.utils.lock import lock_run_folder

    lock_run_folder(folder)
    ready.set()
    done.wait(30)  # a daemon: ends with the tests at the latest


@case("which is in use by another prunekit run (pid")
def train_inside_a_run_folder_in_use(tmp, mp, capsys):
    import multiprocessing

    context = multiprocessing.get_context("fork")
    ready, done = context.Event(), context.Event()
    holder = context.Process(target=_hold, args=(tmp / "run", ready, done), daemon=True)
    holder.start()
    assert ready.wait(30)
    return _train(tmp, "--run-dir", tmp / "run" / "magnitude" / "finetune")


@case("threads must be integers >= 1, got [0]")
def bench_zero_threads(tmp, mp, capsys):
    return ["bench", "--models", "mlpnet", "--threads", "0", "--out-dir", tmp / "bench"]


@case("threads must be integers >= 1, got [-1]")
def bench_negative_threads(tmp, mp, capsys):
    return ["bench", "--models", "mlpnet", "--threads", "-1", "--out-dir", tmp / "bench"]


@case("GiB are available: lower --batch-sizes")
def bench_batch_beyond_memory(tmp, mp, capsys):
    return ["bench", "--models", "mlpnet", "--batch-sizes", str(10**9), "--out-dir", tmp / "b"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_cli_case(name, tmp_path, monkeypatch, capsys):
    setup, expected = CASES[name]
    argv = setup(tmp_path, monkeypatch, capsys)
    capsys.readouterr()
    before = hashes(tmp_path)
    code, _, err = run_cli(capsys, argv)
    monkeypatch.undo()
    assert code != 0
    line = error_line(err)
    assert line.startswith("prunekit ") and "error:" in line, line
    assert expected in line, line
    assert_unchanged(before, tmp_path)
