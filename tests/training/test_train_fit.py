import json

import pytest
import torch
from _train_helpers import make_loaders, make_mlp, random_mask

import prunekit.training.trainer as trainer
from prunekit.errors import CheckpointError, ConfigError
from prunekit.training import TrainConfig, fit, seed_everything


def _config(**kw):
    settings = dict(epochs=4, lr=0.05, weight_decay=5e-4, scheduler="multistep", progress=False)
    settings.update(kw)
    return TrainConfig(**settings)


def _log(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def test_log_and_final_files(tmp_path):
    model = make_mlp()
    train, test = make_loaders(n_train=64)
    final = fit(model, train, test, _config(), tmp_path, mask=random_mask(model))
    log = _log(tmp_path)
    assert [r["epoch"] for r in log] == [1, 2, 3, 4]
    assert set(log[0]) == {
        "epoch", "lr", "train_loss", "train_top1", "test_loss", "test_top1", "seconds"
    }  # fmt: skip
    assert [r["lr"] for r in log] == pytest.approx([0.05, 0.05, 0.005, 0.0005])  # lr/10 at 50%, 75%
    assert json.loads((tmp_path / "final.json").read_text()) == final
    assert final["epoch"] == 4 and final["test_top1"] == log[-1]["test_top1"]
    assert not {"best_epoch", "best_test_top1", "best_val_top1"} & set(final)  # no test pick
    assert final["sparsity"] == pytest.approx(0.9, abs=0.01)


def test_best_epoch_is_chosen_on_the_validation_loader_only(tmp_path):
    from _train_helpers import make_dataset
    from torch.utils.data import DataLoader

    model = make_mlp()
    train, test = make_loaders(n_train=64)
    validation = DataLoader(make_dataset(64, seed=7), batch_size=64)
    final = fit(model, train, test, _config(), tmp_path, validation_loader=validation)
    log = _log(tmp_path)
    best = max(log, key=lambda r: (r["val_top1"], -r["epoch"]))
    assert final["best_epoch"] == best["epoch"] and final["best_val_top1"] == best["val_top1"]
    assert "best_test_top1" not in final and "val_top1" in log[0]


def test_top5_logged_with_more_than_ten_classes(tmp_path):
    from _train_helpers import make_dataset
    from torch.utils.data import DataLoader

    model = make_mlp(classes=12)
    loader = DataLoader(make_dataset(64, classes=12), batch_size=32)
    final = fit(model, loader, loader, _config(epochs=1), tmp_path)
    assert "test_top5" in final and "test_top5" in _log(tmp_path)[0]


def _interrupt_at_checkpoint(monkeypatch, call):
    """Make the ``call``-th checkpoint write crash, after that epoch's log line."""
    real, calls = trainer.save_checkpoint, []

    def save(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "save_checkpoint", save)


@pytest.mark.parametrize("loader_generator", [False, True])
def test_resume_matches_an_uninterrupted_run(tmp_path, monkeypatch, loader_generator):
    def loaders():
        g = seed_everything(11) if loader_generator else None
        return make_loaders(n_train=96, generator=g)

    mask = random_mask(make_mlp())
    reference = make_mlp()
    expected = fit(reference, *loaders(), _config(), tmp_path / "a", mask=mask)

    with monkeypatch.context() as patch:
        _interrupt_at_checkpoint(patch, call=3)
        with pytest.raises(KeyboardInterrupt):
            fit(make_mlp(), *loaders(), _config(), tmp_path / "b", mask=mask)
    assert len(_log(tmp_path / "b")) == 3  # epoch 3 logged, its checkpoint never written
    resumed = make_mlp(seed=7)  # another init: everything must come from the checkpoint
    train, test = loaders()
    if loader_generator:
        torch.randperm(5, generator=train.generator)  # its state must come back too
    final = fit(resumed, train, test, _config(), tmp_path / "b", mask=mask, resume=True)

    for (name, a), b in zip(
        reference.state_dict().items(), resumed.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    strip = lambda log: [{k: v for k, v in r.items() if k != "seconds"} for r in log]  # noqa: E731
    assert strip(_log(tmp_path / "b")) == strip(_log(tmp_path / "a"))
    assert final == expected


def test_resume_with_more_epochs_recomputes_the_schedule(tmp_path):
    train, test = make_loaders(n_train=32)
    fit(make_mlp(), train, test, _config(epochs=2, scheduler="cosine"), tmp_path)
    fit(make_mlp(), train, test, _config(epochs=4, scheduler="cosine"), tmp_path, resume=True)
    lrs = [r["lr"] for r in _log(tmp_path)]
    # epochs 1-2 followed the 2-epoch cosine, epochs 3-4 the 4-epoch one
    assert lrs == pytest.approx([0.05, 0.025, 0.025, 0.05 * (1 - 2**-0.5) / 2])


def test_finished_run_is_not_redone(tmp_path, monkeypatch):
    train, test = make_loaders(n_train=32)
    model = make_mlp()
    final = fit(model, train, test, _config(epochs=2), tmp_path)
    log = (tmp_path / "log.jsonl").read_text()

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(trainer, "train_one_epoch", no_training)
    again = make_mlp(seed=3)
    assert fit(again, train, test, _config(epochs=2), tmp_path, resume=True) == final
    assert all(
        torch.equal(a, b) for a, b in zip(again.parameters(), model.parameters(), strict=True)
    )
    assert (tmp_path / "log.jsonl").read_text() == log


def test_resume_refuses_another_mask_or_settings(tmp_path):
    train, test = make_loaders(n_train=32)
    model = make_mlp()
    mask = random_mask(model, 0.9, seed=1)
    fit(model, train, test, _config(epochs=1), tmp_path, mask=mask)
    with pytest.raises(ConfigError, match="different|mask"):
        fit(make_mlp(), train, test, _config(epochs=2), tmp_path, random_mask(model, 0.9, 2), True)
    with pytest.raises(ConfigError, match="no mask"):
        fit(make_mlp(), train, test, _config(epochs=2), tmp_path, None, resume=True)
    with pytest.raises(ConfigError, match="lr 0.05 → 0.1"):
        fit(make_mlp(), train, test, _config(epochs=2, lr=0.1), tmp_path, mask, resume=True)
    with pytest.raises(ConfigError, match="already holds a training run"):
        fit(make_mlp(), train, test, _config(epochs=2), tmp_path, mask)


def test_resume_from_a_corrupt_checkpoint(tmp_path):
    train, test = make_loaders(n_train=32)
    fit(make_mlp(), train, test, _config(epochs=1), tmp_path)
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        fit(make_mlp(), train, test, _config(epochs=2), tmp_path, resume=True)


def test_runs_without_a_folder_or_test_loader():
    train, _ = make_loaders(n_train=32)
    final = fit(make_mlp(), train, None, _config(epochs=1))
    assert final["epoch"] == 1 and "test_top1" not in final
    with pytest.raises(ConfigError, match="run_dir"):
        fit(make_mlp(), train, None, _config(epochs=1), resume=True)


def test_train_config_from_dict():
    with pytest.raises(ConfigError, match="valid: sgd, adam, adamw"):
        TrainConfig(optimizer="SGDD")
    config = TrainConfig.from_dict({"epochs": 3, "lr": 0.05, "milestones": [0.5]})
    assert config.milestones == (0.5,)
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="unknown training setting"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(ConfigError, match="epochs"):
        TrainConfig(epochs=0)
