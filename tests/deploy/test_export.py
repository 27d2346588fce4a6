"""Exported models rebuild the dense masked model bit for bit; bad files are refused."""

import json
import struct

import pytest
import torch
from deploy_models import MODEL_INPUTS
from safetensors.torch import save_file

from prunekit.deploy import (
    dense_size_bytes,
    export_pruned,
    is_exported,
    load_exported,
    read_exported,
)
from prunekit.deploy.export import decode_positions, encode_positions
from prunekit.errors import CheckpointError


@pytest.mark.parametrize("name", list(MODEL_INPUTS))
def test_export_rebuilds_the_masked_model_bit_for_bit(masked_model, tmp_path, name):
    model, mask = masked_model(name, 0.95)
    path = export_pruned(model, mask, tmp_path / "m.safetensors", name)
    rebuilt = load_exported(path)
    x = torch.randn(2, *MODEL_INPUTS[name])
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))
    for key, value in model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[key], value), key
    assert read_exported(path).mask.equal(mask)
    assert not rebuilt.training


def test_positions_take_the_smaller_encoding_and_decode_exactly():
    generator = torch.Generator().manual_seed(0)
    for density, expected in ((0.01, "index"), (0.5, "bitmask")):
        keep = torch.rand(300, 784, generator=generator) < density
        encoding, data = encode_positions(keep)
        assert encoding == expected
        assert torch.equal(decode_positions(encoding, data, (300, 784), "w"), keep)
    assert encode_positions(torch.zeros(5, 3, dtype=torch.bool))[0] == "index"


def test_export_at_098_is_much_smaller_than_the_dense_file(masked_model, tmp_path):
    model, mask = masked_model("lenet_300_100", 0.98)
    path = export_pruned(model, mask, tmp_path / "m.safetensors", "lenet_300_100")
    assert path.stat().st_size < dense_size_bytes(model) / 10


def test_model_kwargs_and_num_classes_travel_in_the_file(tmp_path):
    from prunekit.masks import Mask
    from prunekit.models import create_model

    model = create_model("mlpnet", num_classes=7, in_features=12).eval()
    mask = Mask({"fc1.weight": torch.rand(40, 12) < 0.5})
    mask.apply(model)
    path = export_pruned(model, mask, tmp_path / "m.safetensors", "mlpnet", {"in_features": 12})
    rebuilt = load_exported(path)
    x = torch.randn(3, 12)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))


@pytest.fixture
def exported(masked_model, tmp_path):
    model, mask = masked_model("mlpnet", 0.9)
    return export_pruned(model, mask, tmp_path / "m.safetensors", "mlpnet")


def test_truncated_and_garbage_files_are_refused(exported, tmp_path):
    data = exported.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    for path in (truncated, garbage, tmp_path / "missing.safetensors"):
        with pytest.raises(CheckpointError):
            load_exported(path)


def test_a_torch_pickle_is_not_an_export_and_is_never_unpickled(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"w": torch.ones(2)}, path)
    assert not is_exported(path)
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        read_exported(path)


def test_other_safetensors_and_tampered_layouts_are_refused(exported, tmp_path):
    other = tmp_path / "other.safetensors"
    save_file({"w": torch.ones(2)}, other)
    with pytest.raises(CheckpointError, match="not a prunekit export"):
        read_exported(other)
    data = exported.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    layout = json.loads(header["__metadata__"]["layout"])
    layout["fc1.weight"]["kept"] = 1
    layout["fc1.weight"]["shape"] = [40, 785]
    header["__metadata__"]["layout"] = json.dumps(layout)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    tampered = tmp_path / "tampered.safetensors"
    tampered.write_bytes(struct.pack("<Q", len(text)) + text + data[8 + length :])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_exported(tampered)
