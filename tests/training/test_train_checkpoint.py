import argparse

import pytest
import torch
from _train_helpers import make_mlp, random_mask

from prunekit.errors import CheckpointError
from prunekit.masks import Mask
from prunekit.training import (
    build_optimizer,
    build_scheduler,
    get_rng_state,
    load_checkpoint,
    save_checkpoint,
)


def _save(path, mask=None):
    model = make_mlp()
    opt = build_optimizer(model.parameters(), "sgd", lr=0.1)
    model(torch.randn(2, 16)).sum().backward()
    opt.step()  # momentum buffers in the optimizer state
    sched = build_scheduler(opt, "multistep", epochs=4)
    opt.step()
    sched.step()
    save_checkpoint(
        path,
        epoch=1,
        model_state=model.state_dict(),
        optimizer_state=opt.state_dict(),
        scheduler_state=sched.state_dict(),
        mask=mask,
        metrics={"last": {"epoch": 1, "test_top1": 50.0}, "best": {"epoch": 1}},
        rng=get_rng_state(),
        config={"epochs": 4},
    )
    return model


def test_roundtrip_is_weights_only(tmp_path):
    path = tmp_path / "checkpoint.pt"
    model = _save(path, mask=random_mask(make_mlp()))
    torch.load(path, weights_only=True)  # no arbitrary objects inside
    state = load_checkpoint(path)
    assert state["epoch"] == 1
    assert isinstance(state["mask"], Mask) and 0.89 < state["mask"].sparsity < 0.91
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state["model"].items())
    assert state["scheduler"]["last_epoch"] == 1
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left no temporary file


def _one_line_error(path):
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    return str(info.value)


def test_truncated_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.pt"
    _save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert "corrupt" in _one_line_error(path)


def test_garbage_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(bytes(range(256)) * 8)
    assert "corrupt" in _one_line_error(path)


def test_missing_file_and_keys_and_arbitrary_objects(tmp_path):
    _one_line_error(tmp_path / "absent.pt")
    torch.save({"model": {}, "epoch": 1}, tmp_path / "partial.pt")
    assert "lacks" in _one_line_error(tmp_path / "partial.pt")
    torch.save({"x": argparse.Namespace(a=1)}, tmp_path / "object.pt")  # arbitrary object
    assert "refused" in _one_line_error(tmp_path / "object.pt")
