"""Synthetic checkpoints in the WoodFisher/CBS, .pth.tar, prunekit and plain layouts."""

import os
import subprocess
import sys
import textwrap
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from prunekit.checkpoints import (
    ForeignObject,
    load_foreign_checkpoint,
    load_pretrained,
    read_foreign_checkpoint,
)
from prunekit.models import create_model

SETSTATE_CALLS = []


class TrainingConfig:
    """Stands for the config objects pickled next to the WoodFisher/CBS weights."""

    def __init__(self, lr=0.1, arch="mlpnet"):
        self.lr = lr
        self.arch = arch

    def __setstate__(self, state):
        SETSTATE_CALLS.append(state)  # would show that the class was instantiated
        self.__dict__.update(state)


def mlpnet_weights():
    return {n: p.detach().clone() for n, p in create_model("mlpnet").state_dict().items()}


def woodfisher_checkpoint(weights, masks=None):
    """The key layout of the CBS ``mnist_25_epoch_93.97.ckpt``."""
    state = OrderedDict()
    for name, value in weights.items():
        layer = name.rpartition(".")[0]
        mask = masks[name] if masks else torch.ones_like(value)
        state[f"module.{layer}._weight_mask"] = mask
        state[f"module.{layer}._layer.weight"] = value
    return {
        "epoch": 24,
        "model_config": {"arch": "mlpnet", "dataset": "mnist"},
        "model_state_dict": state,
        "optimizer": {"type": torch.optim.SGD, "state_dict": {"lr": 0.01}},
        "config": TrainingConfig(lr=0.01),
    }


@pytest.fixture(params=[True, False], ids=["zip", "legacy"])
def zip_format(request):
    return request.param


def save(obj, path, zip_format=True):
    torch.save(obj, path, _use_new_zipfile_serialization=zip_format)
    return path


def test_woodfisher_layout_maps_keys_and_drops_all_ones_masks(tmp_path, zip_format):
    weights = mlpnet_weights()
    path = save(woodfisher_checkpoint(weights), tmp_path / "mlp.ckpt", zip_format)

    checkpoint = read_foreign_checkpoint(path)

    assert checkpoint.format == "woodfisher"
    assert checkpoint.mask is None
    assert sorted(checkpoint.state_dict) == ["fc1.weight", "fc2.weight", "fc3.weight"]
    for name, value in weights.items():
        torch.testing.assert_close(checkpoint.state_dict[name], value)
    assert checkpoint.metadata == {"epoch": 24}
    assert f"{__name__}.TrainingConfig" in checkpoint.foreign_globals
    assert "torch.optim.sgd.SGD" in checkpoint.foreign_globals
    assert SETSTATE_CALLS == []


def test_custom_config_object_is_not_instantiated(tmp_path, zip_format):
    path = save(
        {"config": TrainingConfig(lr=0.5), "w": torch.zeros(1)}, tmp_path / "c.pt", zip_format
    )
    from prunekit.checkpoints import restricted_torch_load

    loaded = restricted_torch_load(path)
    assert SETSTATE_CALLS == []
    assert not isinstance(loaded["config"], TrainingConfig)
    assert isinstance(loaded["config"], ForeignObject)
    assert loaded["config"].foreign_name == f"{__name__}.TrainingConfig"
    assert loaded["config"].state == {"lr": 0.5, "arch": "mlpnet"}


def test_clean_subprocess_loads_without_importing_the_config_module(tmp_path):
    path = save(woodfisher_checkpoint(mlpnet_weights()), tmp_path / "mlp.ckpt")
    module_name = TrainingConfig.__module__
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})  # the module *could* be imported
        from prunekit.checkpoints import load_pretrained, read_foreign_checkpoint
        checkpoint = read_foreign_checkpoint({str(path)!r})
        model = load_pretrained("mlpnet", {str(path)!r})
        assert {module_name!r} not in sys.modules, "the config's module was imported"
        print(sorted(checkpoint.state_dict), checkpoint.foreign_globals)
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stderr
    assert "['fc1.weight', 'fc2.weight', 'fc3.weight']" in result.stdout
    assert f"{module_name}.TrainingConfig" in result.stdout


def test_woodfisher_masks_that_remove_weights_are_returned_and_applied(tmp_path, zip_format):
    weights = mlpnet_weights()
    masks = {name: torch.ones_like(value) for name, value in weights.items()}
    masks["fc2.weight"][0, :5] = 0
    path = save(woodfisher_checkpoint(weights, masks), tmp_path / "pruned.ckpt", zip_format)

    checkpoint = read_foreign_checkpoint(path)

    assert checkpoint.mask is not None
    assert sorted(checkpoint.mask) == ["fc1.weight", "fc2.weight", "fc3.weight"]
    assert checkpoint.mask.num_removed == 5
    assert checkpoint.mask["fc2.weight"].dtype == torch.bool
    assert (checkpoint.state_dict["fc2.weight"][0, :5] == 0).all()
    torch.testing.assert_close(checkpoint.state_dict["fc2.weight"][1:], weights["fc2.weight"][1:])


def test_pth_tar_layout_strips_data_parallel_prefix(tmp_path, zip_format):
    model = create_model("resnet20")
    state = OrderedDict((f"module.{k}", v) for k, v in model.state_dict().items())
    obj = {"epoch": 3, "arch": "resnet20_cifar", "state_dict": state, "best_top1": 50.0}
    path = save(obj, tmp_path / "resnet.pth.tar", zip_format)

    checkpoint = read_foreign_checkpoint(path)
    assert checkpoint.format == "pth.tar"
    assert checkpoint.metadata == {"epoch": 3, "arch": "resnet20_cifar", "best_top1": 50.0}
    assert checkpoint.foreign_globals == []
    loaded = load_pretrained("resnet20", path)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)


def test_plain_state_dict_and_prunekit_checkpoint(tmp_path, zip_format):
    weights = mlpnet_weights()
    plain = save(weights, tmp_path / "plain.pt", zip_format)
    assert read_foreign_checkpoint(plain).format == "state-dict"
    assert sorted(load_foreign_checkpoint(plain)) == sorted(weights)

    mask = {"fc1.weight": torch.rand_like(weights["fc1.weight"]) > 0.5}
    pruned = {**weights, "fc1.weight": weights["fc1.weight"] * mask["fc1.weight"]}
    ours = save({"model": pruned, "mask": mask, "epoch": 1}, tmp_path / "ours.pt", zip_format)
    checkpoint = read_foreign_checkpoint(ours)
    assert checkpoint.format == "checkpoint"
    assert torch.equal(checkpoint.mask["fc1.weight"], mask["fc1.weight"])
    torch.testing.assert_close(checkpoint.state_dict["fc1.weight"], pruned["fc1.weight"])


def test_torch_prune_state_dict_is_folded(tmp_path):
    model = create_model("mlpnet")
    torch.nn.utils.prune.l1_unstructured(model.fc1, "weight", amount=0.5)
    expected = model.fc1.weight.detach().clone()
    path = save(model.state_dict(), tmp_path / "tp.pt")

    checkpoint = read_foreign_checkpoint(path)
    assert sorted(checkpoint.state_dict) == ["fc1.weight", "fc2.weight", "fc3.weight"]
    torch.testing.assert_close(checkpoint.state_dict["fc1.weight"], expected)
    assert checkpoint.mask is not None
    assert checkpoint.mask.num_removed == expected.numel() // 2


def test_loaded_tensors_are_plain_and_detached(tmp_path):
    parameter = torch.nn.Parameter(torch.randn(3, 3))
    path = save({"w": parameter}, tmp_path / "p.pt")
    value = load_foreign_checkpoint(path)["w"]
    assert type(value) is torch.Tensor and not value.requires_grad
