"""The key property: removed weights stay exactly zero through training and resume."""

import copy

import pytest
import torch
from _train_helpers import make_loaders, make_mlp, pruned_values, random_mask

from prunekit.masks import MaskEnforcer
from prunekit.training import TrainConfig, build_optimizer, fit, load_checkpoint, train_one_epoch

OPTIMIZERS = {
    "sgd-momentum": dict(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4),
    "sgd-nesterov": dict(optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4),
    "adam": dict(optimizer="adam", lr=1e-2, weight_decay=5e-4),
    "adamw": dict(optimizer="adamw", lr=1e-2, weight_decay=5e-4),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_pruned_weights_stay_exactly_zero(tmp_path, name):
    model = make_mlp()
    mask = random_mask(model, 0.9)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train, test = make_loaders(n_train=512, batch_size=16)  # 32 steps per epoch
    config = TrainConfig(epochs=8, scheduler="cosine", progress=False, **OPTIMIZERS[name])
    fit(model, train, test, config, run_dir=tmp_path, mask=mask)  # 256 steps

    assert pruned_values(model, mask).numel() > 0.85 * mask.num_total
    assert (pruned_values(model, mask) == 0).all()
    for n, m in mask.items():  # kept weights did train
        assert not torch.equal(model.get_parameter(n)[m], before[n][m])
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["mask"].equal(mask)
    saved = make_mlp(seed=5)
    saved.load_state_dict(state["model"])
    assert (pruned_values(saved, mask) == 0).all()

    # resume from the checkpoint into a fresh model and train 4 more epochs (128 more steps)
    resumed = make_mlp(seed=99)
    config.epochs = 12
    final = fit(resumed, train, test, config, run_dir=tmp_path, mask=mask, resume=True)
    assert final["epoch"] == 12
    assert (pruned_values(resumed, mask) == 0).all()
    assert (pruned_values(saved, mask) == 0).all()
    for n, m in mask.items():
        assert not torch.equal(resumed.get_parameter(n)[m], saved.get_parameter(n)[m])


def test_mask_holds_when_optimizer_state_predates_it():
    """Momentum built up while dense does not move weights removed afterwards."""
    model = make_mlp()
    train, _ = make_loaders()
    opt = build_optimizer(model.parameters(), "sgd", lr=0.05, momentum=0.9, weight_decay=5e-4)
    train_one_epoch(model, train, opt, "cpu", progress=False)
    mask = random_mask(model, 0.9)
    MaskEnforcer(model, mask).attach(opt)
    train_one_epoch(model, train, opt, "cpu", progress=False)
    assert (pruned_values(model, mask) == 0).all()


def test_enforcer_adds_nothing_to_the_module(tmp_path):
    model = make_mlp()
    keys = list(model.state_dict())
    buffers = list(model.named_buffers())
    mask = random_mask(model, 0.9)
    train, test = make_loaders(n_train=64)
    fit(model, train, test, TrainConfig(epochs=1, progress=False), tmp_path, mask=mask)
    assert list(model.state_dict()) == keys
    assert list(model.named_buffers()) == buffers
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    assert all(p._backward_hooks is None for p in model.parameters())
    clone = copy.deepcopy(model)
    assert all(
        torch.equal(a, b) for a, b in zip(clone.parameters(), model.parameters(), strict=True)
    )
    assert list(load_checkpoint(tmp_path / "checkpoint.pt")["model"]) == keys
