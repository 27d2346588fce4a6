"""Files that are not usable checkpoints give a one-line CheckpointError naming the file."""

import json
import zipfile
from pathlib import Path

import pytest
import torch

from prunekit.checkpoints import load_foreign_checkpoint, load_pretrained
from prunekit.errors import CheckpointError, PrunekitError
from prunekit.models import create_model


def assert_one_line_naming(excinfo, path):
    message = str(excinfo.value)
    assert "\n" not in message
    assert str(path) in message


def write_bytes(path, data):
    path.write_bytes(data)
    return path


def mlpnet_file(tmp_path, zip_format):
    path = tmp_path / ("mlp_zip.pt" if zip_format else "mlp_legacy.pt")
    state = {f"module.{k}": v for k, v in create_model("mlpnet").state_dict().items()}
    torch.save({"state_dict": state}, path, _use_new_zipfile_serialization=zip_format)
    return path


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\x00\x01garbage bytes\xff" * 50,
        json.dumps({"fc1.weight": [[1.0, 2.0]]}).encode(),
        b"PK\x03\x04 not really a zip",
    ],
    ids=["empty", "garbage", "json", "fake-zip-header"],
)
def test_non_checkpoints_are_refused(tmp_path, content):
    path = write_bytes(tmp_path / "bad.ckpt", content)
    with pytest.raises(CheckpointError) as excinfo:
        load_foreign_checkpoint(path)
    assert_one_line_naming(excinfo, path)
    assert isinstance(excinfo.value, PrunekitError)


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.95])
def test_truncated_files_are_refused(tmp_path, zip_format, fraction):
    full = mlpnet_file(tmp_path, zip_format).read_bytes()
    path = write_bytes(tmp_path / "truncated.pt", full[: int(len(full) * fraction)])
    with pytest.raises(CheckpointError) as excinfo:
        load_foreign_checkpoint(path)
    assert_one_line_naming(excinfo, path)


def test_zip_with_a_corrupt_member_is_refused(tmp_path):
    source = mlpnet_file(tmp_path, zip_format=True)
    path = tmp_path / "corrupt.pt"
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("data.pkl"):
                data = data[: len(data) // 2]
            dst.writestr(info, data)
    with pytest.raises(CheckpointError) as excinfo:
        load_foreign_checkpoint(path)
    assert_one_line_naming(excinfo, path)


def test_missing_file_and_directory(tmp_path):
    for path in (tmp_path / "absent.ckpt", tmp_path):
        with pytest.raises(CheckpointError, match="does not exist") as excinfo:
            load_foreign_checkpoint(path)
        assert_one_line_naming(excinfo, path)


@pytest.mark.parametrize(
    "obj",
    [torch.zeros(3), [torch.zeros(3)], {"epoch": 3, "arch": "x"}, {"state_dict": {"a": 1}}, {}],
    ids=["tensor", "list", "no-state-dict", "non-tensor-entry", "empty-dict"],
)
def test_torch_files_without_a_state_dict_are_refused(tmp_path, obj):
    path = tmp_path / "odd.pt"
    torch.save(obj, path)
    with pytest.raises(CheckpointError) as excinfo:
        load_foreign_checkpoint(path)
    assert_one_line_naming(excinfo, path)


def test_state_dict_for_another_model_lists_missing_and_unexpected_keys(tmp_path):
    path = tmp_path / "lenet.pt"
    torch.save(create_model("lenet_300_100").state_dict(), path)
    with pytest.raises(CheckpointError) as excinfo:
        load_pretrained("mlpnet", path)
    message = str(excinfo.value)
    assert_one_line_naming(excinfo, path)
    assert "'mlpnet'" in message
    assert "unexpected keys: fc1.bias" in message
    assert "shape mismatches" in message  # fc1.weight is 300x784 there, 40x784 here

    resnet_path = tmp_path / "resnet.pt"
    torch.save(create_model("resnet20").state_dict(), resnet_path)
    with pytest.raises(CheckpointError) as excinfo:
        load_pretrained("mlpnet", resnet_path)
    message = str(excinfo.value)
    assert "missing keys: fc1.weight, fc2.weight, fc3.weight" in message
    assert "unexpected keys: conv1.weight" in message
    assert "in all)" in message


def test_unknown_model_name_is_a_config_error(tmp_path):
    path = mlpnet_file(tmp_path, True)
    with pytest.raises(PrunekitError, match="unknown model"):
        load_pretrained("mlpnett", Path(path))


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_whole_pickled_model_is_refused_without_being_rebuilt(tmp_path, zip_format):
    path = tmp_path / "model.pt"
    torch.save(create_model("mlpnet"), path, _use_new_zipfile_serialization=zip_format)
    with pytest.raises(CheckpointError, match="pickled prunekit.models.mlp.MLPNet") as excinfo:
        load_foreign_checkpoint(path)
    assert_one_line_naming(excinfo, path)

    wrapped = tmp_path / "wrapped.pt"
    torch.save(
        {"model": create_model("mlpnet")}, wrapped, _use_new_zipfile_serialization=zip_format
    )
    with pytest.raises(CheckpointError, match="'model' is a pickled"):
        load_foreign_checkpoint(wrapped)


def test_forced_weights_only_environment_is_explained(tmp_path, monkeypatch):
    path = mlpnet_file(tmp_path, True)
    monkeypatch.setenv("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(CheckpointError, match="TORCH_FORCE_WEIGHTS_ONLY_LOAD"):
        load_foreign_checkpoint(path)


def test_mask_that_fits_no_weight_is_refused(tmp_path):
    path = tmp_path / "ours.pt"
    state = create_model("mlpnet").state_dict()
    torch.save({"model": state, "mask": {"fc1.weight": torch.ones(3, 3, dtype=torch.bool)}}, path)
    with pytest.raises(CheckpointError, match="'mask' entry fc1.weight") as excinfo:
        load_foreign_checkpoint(path)
    assert_one_line_naming(excinfo, path)


def test_woodfisher_mask_with_values_other_than_0_and_1_is_refused(tmp_path):
    path = tmp_path / "wf.ckpt"
    weight = torch.randn(40, 784)
    state = {"module.fc1._layer.weight": weight, "module.fc1._weight_mask": weight}
    torch.save({"model_state_dict": state}, path)
    with pytest.raises(CheckpointError, match="other than 0 and 1"):
        load_foreign_checkpoint(path)
