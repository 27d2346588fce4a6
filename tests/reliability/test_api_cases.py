"""Issue 10 through the Python API: each bad call raises one ``PrunekitError`` subclass with
a one-line message naming the real cause; files written before are left unchanged.

A case's setup builds what it needs below ``tmp`` and returns the call to make.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import struct

import pytest
import torch
from _reliability import (
    Evil,
    assert_unchanged,
    export_file,
    hashes,
    mlpnet_state,
    save,
    temp_files_on_a_full_disk,
)
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from prunekit.checkpoints import read_foreign_checkpoint
from prunekit.data import MNIST
from prunekit.data.mnist import read_idx
from prunekit.data.synthetic import Synthetic
from prunekit.deploy import load_exported, read_exported
from prunekit.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    NonFiniteError,
    PrunekitError,
    ResourceError,
    RunFolderBusyError,
    RunFolderError,
    UnsafeFileError,
)
from prunekit.masks import Mask, load_mask
from prunekit.methods.init import get_init_method, score_and_mask
from prunekit.methods.oneshot import FisherSettings, L0Settings, UpdateSettings
from prunekit.pipelines.export import check_out_path
from prunekit.pipelines.grid import check_distinct_counts, check_distinct_methods
from prunekit.reports.collect import collect_results
from prunekit.second_order import EmpiricalFisher, per_sample_gradients
from prunekit.training import TrainConfig, build_optimizer, evaluate, fit, load_checkpoint
from prunekit.utils.files import atomic_torch_save, atomic_write_text, ensure_folder
from prunekit.utils.lock import lock_run_folder

CASES: dict[str, tuple] = {}


def case(error: type[PrunekitError], expected: str):
    def register(setup):
        CASES[setup.__name__] = (setup, error, expected)
        return setup

    return register


def net(classes: int = 4) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, classes))


def batch(n: int = 6, classes: int = 4, width: int = 12):
    return torch.randn(n, width), torch.arange(n) % classes


def poisoned(value: float) -> nn.Module:
    model = net()
    with torch.no_grad():
        model[1].weight[0, 0] = value
    return model


# --- scoring (SNIP, GraSP, magnitude) --------------------------------------------------------
@case(ConfigError, "at least one sample")
def snip_on_zero_samples(tmp):
    return lambda: score_and_mask("snip", net(), 0.5, data=(torch.empty(0, 12), torch.empty(0)))


@case(ConfigError, "at least one sample")
def grasp_on_zero_samples(tmp):
    empty = (torch.empty(0, 12), torch.empty(0, dtype=torch.long))
    return lambda: score_and_mask("grasp", net(), 0.5, data=[empty])


@case(DataError, "labels range over [0, 6]")
def snip_labels_out_of_range(tmp):
    return lambda: score_and_mask("snip", net(), 0.5, data=batch(n=7, classes=7))


@case(ConfigError, "do not fit model")
def snip_wrong_input_shape(tmp):
    return lambda: score_and_mask("snip", net(), 0.5, data=batch(width=10))


@case(ConfigError, "5 inputs and 6 targets")
def grasp_count_mismatch(tmp):
    x, y = batch()
    return lambda: score_and_mask("grasp", net(), 0.5, data=(x[:5], y))


@case(NonFiniteError, "weight 1.weight holds NaN/Inf")
def magnitude_on_nan_weights(tmp):
    return lambda: score_and_mask("magnitude", poisoned(float("nan")), 0.5)


@case(NonFiniteError, "the inputs hold 1 NaN/Inf")
def snip_on_nan_inputs(tmp):
    x, y = batch()
    x[0, 0] = float("nan")
    return lambda: get_init_method("snip").score(net(), batches=(x, y))


# --- second order ------------------------------------------------------------------------------
@case(DataError, "labels range over [0, 9]")
def gradients_labels_out_of_range(tmp):
    return lambda: per_sample_gradients(net(), ["1.weight"], *batch(n=10, classes=10))


@case(ConfigError, "do not fit model")
def gradients_wrong_input_shape(tmp):
    return lambda: per_sample_gradients(net(), ["1.weight"], *batch(width=7))


@case(DataError, "5 inputs but 6 targets")
def gradients_count_mismatch(tmp):
    x, y = batch()
    return lambda: per_sample_gradients(net(), ["1.weight"], x[:5], y)


@case(ConfigError, "unknown parameter name(s) ['fc9.weight']")
def gradients_unknown_parameter(tmp):
    return lambda: per_sample_gradients(net(), ["fc9.weight"], *batch())


@case(NonFiniteError, "gradient samples: the model's weights are not finite")
def gradients_of_nan_weights(tmp):
    return lambda: per_sample_gradients(poisoned(float("nan")), ["1.weight"], *batch())


@case(ConfigError, "NaN weights give NaN scores")
def one_shot_magnitude_on_nan_weights(tmp):
    from prunekit.methods.oneshot import prune_one_shot

    return lambda: prune_one_shot(poisoned(float("nan")), ["1.weight"], "magnitude", 0.5)


@case(NonFiniteError, "Fisher: 1 gradient entries are NaN/Inf")
def fisher_nan_gradients(tmp):
    grads = torch.randn(5, 8)
    grads[2, 3] = float("nan")
    return lambda: EmpiricalFisher(grads, damp=1e-3)


@case(ConfigError, "dampening must be finite")
def fisher_infinite_damp(tmp):
    return lambda: EmpiricalFisher(torch.randn(5, 8), damp=float("inf"))


# --- training and evaluation -------------------------------------------------------------------
def loader(n: int = 8, nan_input: bool = False) -> DataLoader:
    x, y = batch(n)
    if nan_input:
        x[3] = float("nan")
    return DataLoader(TensorDataset(x, y), batch_size=4)


@case(NonFiniteError, "evaluation: the model's weights are not finite")
def evaluate_nan_weights(tmp):
    return lambda: evaluate(poisoned(float("nan")), loader(), "cpu")


@case(DataError, "the data set is empty")
def evaluate_empty_test_set(tmp):
    return lambda: evaluate(net(), loader(n=0), "cpu")


@case(NonFiniteError, "epoch 1/1, step 1: the input batch hold")
def training_on_nan_inputs(tmp):
    config = TrainConfig(epochs=1, progress=False)
    return lambda: fit(net(), loader(nan_input=True), None, config)


@case(NonFiniteError, "before training: the model's weights are not finite")
def training_from_inf_weights(tmp):
    config = TrainConfig(epochs=1, progress=False)
    return lambda: fit(poisoned(float("inf")), loader(), None, config)


@case(NonFiniteError, "training diverged; lower the learning rate")
def training_diverges(tmp):
    model = net()
    with torch.no_grad():
        model[3].weight.mul_(1e30)  # finite weights whose logits overflow
    config = TrainConfig(epochs=1, lr=1e30, momentum=0.0, scheduler="constant", progress=False)
    return lambda: fit(model, loader(), None, config)


@case(ConfigError, "weight_decay must be a finite number")
def optimizer_nan_weight_decay(tmp):
    return lambda: build_optimizer(net().parameters(), "sgd", weight_decay=float("nan"))


@case(DataError, "the training set is empty")
def training_on_empty_set(tmp):
    return lambda: fit(net(), loader(n=0), None, TrainConfig(epochs=1, progress=False))


# --- masks, checkpoints, data files --------------------------------------------------------------
@case(ConfigError, "values other than 0/1 (e.g. [0.3")
def float_mask(tmp):
    return lambda: Mask({"1.weight": torch.full((8, 12), 0.3)})


@case(ConfigError, "values other than 0/1 (e.g. [2.0")
def integer_mask_of_twos(tmp):
    return lambda: Mask({"1.weight": torch.full((8, 12), 2)})


@case(UnsafeFileError, "refused for safety")
def malicious_mask_file(tmp):
    path = save({"1.weight": Evil()}, tmp / "mask.pt")
    return lambda: load_mask(path)


@case(UnsafeFileError, "refused for safety")
def malicious_training_checkpoint(tmp):
    path = save({"format": Evil()}, tmp / "checkpoint.pt")
    return lambda: load_checkpoint(path)


@case(CheckpointError, "corrupt or truncated")
def truncated_training_checkpoint(tmp):
    path = save({"model": torch.ones(100)}, tmp / "checkpoint.pt")
    path.write_bytes(path.read_bytes()[:60])
    return lambda: load_checkpoint(path)


@case(DataError, "is truncated: header gives shape (4294967295, 4294967295, 4294967295)")
def idx_dimensions_overflow(tmp):
    path = tmp / "x-idx3-ubyte"
    path.write_bytes(struct.pack(">HBB3I", 0, 8, 3, 2**32 - 1, 2**32 - 1, 2**32 - 1) + b"\0" * 9)
    return lambda: read_idx(path)


@case(DataError, "num_samples >= 1")
def synthetic_no_samples(tmp):
    return lambda: Synthetic(num_samples=0)


@case(PrunekitError, "MNIST")
def mnist_missing(tmp):
    return lambda: MNIST(tmp / "nothing", train=False)


# --- writing ---------------------------------------------------------------------------
@case(RunFolderError, "is a file, not a folder")
def write_into_a_file(tmp):
    (tmp / "file").write_text("keep")
    return lambda: atomic_write_text(tmp / "file" / "x.json", "{}")


@case(RunFolderError, "Not a directory")
def write_under_a_file(tmp):
    (tmp / "file").write_text("keep")
    return lambda: atomic_write_text(tmp / "file" / "sub" / "x.json", "{}")


@case(RunFolderError, "inline_container.cc")
def torch_save_disk_full(tmp):
    target = atomic_torch_save({"w": torch.ones(3)}, tmp / "model.pt")

    class Full:
        def __reduce__(self):
            raise RuntimeError("[enforce fail at inline_container.cc:664] . file write failed")

    return lambda: atomic_torch_save({"w": Full()}, target)


def _hold_lock(folder, ready, done):
    lock_run_folder(folder)
    ready.set()
    done.wait(60)


@case(RunFolderBusyError, "in use by another prunekit run (pid")
def run_folder_locked_by_another_process(tmp):
    context = multiprocessing.get_context("fork")
    ready, done = context.Event(), context.Event()
    holder = context.Process(target=_hold_lock, args=(tmp / "run", ready, done))
    holder.start()
    assert ready.wait(60)

    def second():
        try:
            lock_run_folder(tmp / "run")
        finally:
            done.set()
            holder.join()

    return second


# --- issue 18: exports, settings, messages ---------------------------------------------
@case(CheckpointError, "impossible shape (-40, 784)")
def read_export_of_negative_shape(tmp):
    def negative(tensors, layout):
        layout["fc1.weight"]["shape"] = [-40, 784]

    return lambda: read_exported(export_file(tmp / "neg.safetensors", negative))


@case(CheckpointError, "not floating-point")
def load_export_of_integer_values(tmp):
    def integers(tensors, layout):
        tensors["kept.fc1.weight"] = tensors["kept.fc1.weight"].to(torch.int64)

    return lambda: load_exported(export_file(tmp / "int.safetensors", integers))


@case(ConfigError, "already exists: add --overwrite")
def export_out_exists(tmp):
    (tmp / "out.safetensors").write_text("keep")
    return lambda: check_out_path(tmp / "out.safetensors", [tmp / "src.pt"], overwrite=False)


@case(ConfigError, "is the export's own input")
def export_out_is_the_source(tmp):
    return lambda: check_out_path(tmp / "src.pt", [tmp / "src.pt"], overwrite=True)


@case(ConfigError, "must be finite and positive there")
def fisher_damp_infinite_in_float32(tmp):
    return lambda: FisherSettings(damp=1e300)


@case(ConfigError, "update scales must be >= 0")
def negative_update_scale(tmp):
    return lambda: UpdateSettings(scale=-1.0)


@case(ConfigError, "l0 tol must be a finite number >= 0")
def l0_tol_nan(tmp):
    return lambda: L0Settings(tol=float("nan"))


@case(ConfigError, "l0 tol must be a finite number >= 0")
def l0_tol_negative(tmp):
    return lambda: L0Settings(tol=-1.0)


@case(ConfigError, "is a file, not a folder")
def collect_results_of_a_file(tmp):
    (tmp / "result.json").write_text("{}")
    return lambda: collect_results(tmp / "result.json")


@case(RunFolderError, "No space left on device (ENOSPC)")
def torch_save_on_a_full_disk(tmp):
    import prunekit.utils.files as files

    def call():
        with pytest.MonkeyPatch.context() as mp:
            temp_files_on_a_full_disk(mp, files, suffix=".pt.")
            atomic_torch_save({"w": torch.ones(1000)}, tmp / "model.pt")

    return call


@case(RunFolderError, "read-only file system (EROFS)")
def folder_on_a_read_only_mount(tmp):
    import prunekit.utils.files as files

    class ReadOnly:
        f_flag, f_bavail = os.ST_RDONLY, 1000

    def call():
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(files.os, "access", lambda *args, **kwargs: False)
            mp.setattr(files.os, "statvfs", lambda path: ReadOnly())
            ensure_folder(tmp)

    return call


# --- issue 18: prune_model and the grid checks -------------------------------------------
def _prune_model(data, **kwargs):
    from prunekit.methods.oneshot import prune_model

    return lambda: prune_model(net(), kwargs.pop("method", "magnitude"), 0.5, data, **kwargs)


@case(DataError, "the training data holds no samples")
def prune_model_on_empty_tensors(tmp):
    return _prune_model((torch.empty(0, 12), torch.empty(0, dtype=torch.long)))


@case(DataError, "the training data holds no samples")
def prune_model_on_an_empty_loader(tmp):
    return _prune_model(loader(n=0))


@case(ConfigError, "loss_samples must be >= 1")
def prune_model_with_no_loss_samples(tmp):
    return _prune_model(batch(), loss_samples=0)


@case(DataError, "(one-hot? give targets.argmax(1))")
def prune_model_on_one_hot_targets(tmp):
    x, y = batch()
    return _prune_model((x, torch.nn.functional.one_hot(y, 4).float()))


@case(DataError, "must be class indices, a 1-D integer tensor; got torch.float32 of shape (6,)")
def prune_model_on_float_targets(tmp):
    x, y = batch()
    return _prune_model((x, y.float()))


@case(DataError, "got torch.int64 of shape (6, 1)")
def prune_model_on_2d_targets(tmp):
    x, y = batch()
    return _prune_model((x, y[:, None]))


@case(ConfigError, "the model has no parameter(s) ['fc9.weight']")
def prune_model_unknown_names(tmp):
    return _prune_model(batch(), names=["fc9.weight"])


@case(ConfigError, "is on the meta device")
def prune_model_on_the_meta_device(tmp):
    from prunekit.methods.oneshot import prune_model

    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 4))
    return lambda: prune_model(model, "magnitude", 0.5, batch())


@case(NonFiniteError, "the loss samples: the inputs hold 1 NaN/Inf values")
def prune_model_cbs_with_nan_among_the_loss_samples(tmp):
    x, y = batch(n=8)
    x[5, 3] = float("nan")
    return _prune_model((x, y), method="cbs")


@case(ConfigError, "the 2:5 pattern fits none of the layers")
def prune_model_pattern_that_fits_no_layer(tmp):
    from prunekit.methods.oneshot import prune_model

    return lambda: prune_model(net(), "magnitude", None, batch(), pattern="2:5")


@case(ConfigError, "sparsities 0.9 and 0.9000001 both remove 29124 of the 32360")
def same_removal_count(tmp):
    return lambda: check_distinct_counts([0.9, 0.9000001], 32360)


@case(ConfigError, "methods 'woodfisher' and 'obs+woodfisher' are the same method")
def preset_beside_its_pair(tmp):
    from prunekit.methods.oneshot import get_method

    def parts(name):
        spec = get_method(name)
        return spec.selection.name, spec.update.name

    return lambda: check_distinct_methods(["woodfisher", "obs+woodfisher"], parts)


@case(ConfigError, "--sparsities 0.9 0.95 cannot be run with it")
def pattern_beside_sparsities(tmp):
    from prunekit.pipelines.configs import PruneInitConfig
    from prunekit.pipelines.prune_init import check_config

    config = PruneInitConfig(model="mlpnet", dataset="synthetic", methods=["magnitude"],
                             pattern="2:4", sparsities=[0.9, 0.95])  # fmt: skip
    return lambda: check_config(config)


@case(PrunekitError, "removes every weight of ['fc1.weight']")
def layer_collapse_refused(tmp):
    from prunekit.pipelines.checks import check_collapse

    return lambda: check_collapse(["fc1.weight"], "x", "fail", logging.getLogger(__name__))


@case(ConfigError, "threads must be integers >= 1")
def bench_zero_threads(tmp):
    from prunekit.pipelines.bench import run_bench
    from prunekit.pipelines.configs import BenchConfig

    return lambda: run_bench(BenchConfig(models=["mlpnet"], threads=[0], out_dir=str(tmp)))


@case(ResourceError, "GiB are available: lower --batch-sizes")
def bench_batch_beyond_memory(tmp):
    from prunekit.pipelines.bench import check_bench_memory

    return lambda: check_bench_memory(["mlpnet"], [10**9])


@case(RunFolderBusyError, "which is in use by another prunekit run (pid")
def folder_inside_a_run_folder_in_use(tmp):
    context = multiprocessing.get_context("fork")
    ready, done = context.Event(), context.Event()
    holder = context.Process(target=_hold_lock, args=(tmp / "run", ready, done))
    holder.start()
    assert ready.wait(60)

    def second():
        try:
            lock_run_folder(tmp / "run" / "cell" / "finetune")
        finally:
            done.set()
            holder.join()

    return second


@case(ConfigError, "--sparsities 0.9 0.95 cannot be run with it")
def oneshot_pattern_beside_sparsities(tmp):
    from prunekit.pipelines.configs import OneShotConfig
    from prunekit.pipelines.oneshot import check_levels

    config = OneShotConfig(dataset="synthetic", methods=["magnitude"], pattern="2:4",
                           sparsities=[0.9, 0.95])  # fmt: skip
    return lambda: check_levels(config)


@case(ConfigError, "methods 'l0' and 'l0+cbs_u' are the same method")
def oneshot_l0_beside_its_pair(tmp):
    from prunekit.pipelines.configs import OneShotConfig
    from prunekit.pipelines.oneshot import check_levels

    config = OneShotConfig(dataset="synthetic", methods=["l0", "l0+cbs_u"], sparsities=[0.5])
    return lambda: check_levels(config)


@case(ConfigError, "do not fit model MLPNet")
def eval_export_on_other_data_names_its_model(tmp):
    from prunekit.pipelines.configs import EvalCommandConfig
    from prunekit.pipelines.train import run_eval

    exported = export_file(tmp / "mlpnet.safetensors")
    config = EvalCommandConfig(dataset="cifar10", data_dir=str(tmp / "none"),
                               checkpoint=str(exported))  # fmt: skip
    return lambda: run_eval(config)


@pytest.mark.parametrize("name", sorted(CASES))
def test_api_case(name, tmp_path):
    setup, error, expected = CASES[name]
    call = setup(tmp_path)
    before = hashes(tmp_path)
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and expected in message, message
    assert_unchanged(before, tmp_path)


def test_checkpoint_naming_os_system_says_what_was_skipped(tmp_path, caplog):
    """Issue item 9: a WoodFisher-format file referencing os.system/eval loads its weights
    and warns that those objects were skipped, never run."""
    state = {f"module.{k.replace('.', '._layer.')}": v for k, v in mlpnet_state().items()}
    path = save({"model_state_dict": state, "hook": Evil(), "epoch": 3}, tmp_path / "wf.ckpt")
    with caplog.at_level(logging.WARNING):
        checkpoint = read_foreign_checkpoint(path)
    assert checkpoint.format == "woodfisher" and "posix.system" in checkpoint.foreign_globals
    assert "posix.system" in caplog.text and "nothing was run" in caplog.text


def test_data_fingerprint_follows_the_contents(tmp_path):
    """Issue 18: the cell hash's data fingerprint changes with one pixel, not with a copy."""
    from _reliability import mnist_folder

    from prunekit.data.fingerprint import dataset_fingerprint

    folder = mnist_folder(tmp_path / "a", n_train=10, n_test=5)
    before = dataset_fingerprint(MNIST(folder), MNIST(folder, train=False))
    copy = mnist_folder(tmp_path / "b", n_train=10, n_test=5)
    assert dataset_fingerprint(MNIST(copy), MNIST(copy, train=False)) == before
    raw = bytearray((folder / "t10k-images-idx3-ubyte").read_bytes())
    raw[-1] ^= 1
    (folder / "t10k-images-idx3-ubyte").write_bytes(bytes(raw))
    assert dataset_fingerprint(MNIST(folder), MNIST(folder, train=False)) != before


def test_prune_model_names_the_layers_a_pattern_leaves_dense(caplog):
    """Issue 18: 2:6 fits the 12-wide layer only; the 8-wide one stays dense, named."""
    from prunekit.methods.oneshot import prune_model

    with caplog.at_level(logging.WARNING):
        result = prune_model(net(), "magnitude", None, batch(), pattern="2:6")
    assert "['3.weight'] cannot carry the 2:6 pattern and stay dense" in caplog.text
    assert bool(result.mask["3.weight"].all()) and result.record.removed == 8 * 12 * 4 // 6


def test_collect_results_warns_about_nan(tmp_path, caplog):
    """Issue 18: a NaN in a result.json is named in a warning, never shown silently."""
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "result.json").write_text(
        '{"method": "cbs", "sparsity": 0.9, "seed": 0, "top1": NaN, "loss": Infinity}'
    )
    with caplog.at_level(logging.WARNING):
        collect_results(tmp_path)
    assert "non-finite values (NaN/Inf) in loss, top1" in caplog.text
