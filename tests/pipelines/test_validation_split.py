"""The held-out validation split: taken from the training set only, disjoint, reported."""

import json

import pytest
import torch
from cell_paths import cell_dir

from prunekit.errors import ConfigError
from prunekit.pipelines.configs import PruneInitConfig
from prunekit.pipelines.prune_init import run_prune_init
from prunekit.pipelines.setup import build_data


def _ids(dataset):
    # synthetic images are distinct, so the flattened image identifies the sample
    return {tuple(dataset[i][0].flatten()[:16].tolist()) for i in range(len(dataset))}


def test_validation_is_held_out_of_training_and_test_untouched():
    kwargs = {"num_samples": 200}
    plain = build_data("synthetic", None, 32, 100, seed=3, dataset_kwargs=kwargs)
    data = build_data("synthetic", None, 32, 100, seed=3, dataset_kwargs=kwargs, validation_size=50)
    assert len(data.validation) == 50 and len(data.train) == len(plain.train) - 50
    assert len(data.plain_train) == len(data.train)
    assert len(data.test) == len(plain.test)
    train_ids, val_ids = _ids(data.train), _ids(data.validation)
    assert len(val_ids) == 50 and not train_ids & val_ids
    assert train_ids | val_ids == _ids(plain.train)
    again = build_data(
        "synthetic", None, 32, 100, seed=3, dataset_kwargs=kwargs, validation_size=50
    )
    assert _ids(again.validation) == val_ids, "the split is fixed"
    assert sum(len(y) for _, y in data.validation_loader) == 50


def test_every_seed_sees_the_same_split():
    """A call with seed 3 alone holds out what a call starting at seed 0 does: a cell's
    data never depend on which other seeds shared its call."""
    kwargs = {"num_samples": 200}
    splits = [
        build_data(
            "synthetic", None, 32, 100, seed=seed, dataset_kwargs=kwargs, validation_size=50,
            train_subset=100,
        )
        for seed in (0, 3)
    ]  # fmt: skip
    assert _ids(splits[0].validation) == _ids(splits[1].validation)
    assert splits[0].train.indices == splits[1].train.indices
    first_batches = [next(iter(split.train_loader))[1] for split in splits]
    assert not torch.equal(*first_batches), "the seed still shuffles the training loader"


def test_validation_then_subset():
    data = build_data(
        "synthetic",
        None,
        32,
        100,
        seed=0,
        dataset_kwargs={"num_samples": 200},
        validation_size=40,
        train_subset=30,
    )
    assert len(data.train) == 30 and not _ids(data.train) & _ids(data.validation)


@pytest.mark.parametrize("size", [-1, 10_000])
def test_bad_validation_size_is_a_clear_error(size):
    with pytest.raises(ConfigError, match="validation_size"):
        build_data("synthetic", None, 32, 100, seed=0, validation_size=size)


def test_prune_init_reports_validation_accuracy(tmp_path):
    config = PruneInitConfig(
        model="lenet_300_100",
        dataset="synthetic",
        dataset_kwargs={"num_samples": 256},
        methods=["snip"],
        sparsities=[0.9],
        epochs=1,
        batch_size=64,
        samples_per_class=2,
        validation_size=64,
        run_dir=str(tmp_path / "run"),
        progress=False,
    )
    run_prune_init(config)
    record = json.loads(
        (cell_dir(tmp_path / "run/snip/sparsity-0.9/seed-0") / "result.json").read_text()
    )
    assert 0.0 <= record["val_top1"] <= 100.0 and record["val_loss"] > 0
    assert torch.isfinite(torch.tensor(record["top1"]))
