import copy
import json

import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from prunekit.errors import CheckpointError, ConfigError
from prunekit.masks import (
    Mask,
    MaskEnforcer,
    exponential_schedule,
    from_torch_prune,
    from_torch_prune_state_dict,
    load_mask,
    prunable_parameters,
    save_mask,
    scores_to_mask,
    sparsity_report,
    to_torch_prune,
)


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 16),
        nn.ReLU(),
        nn.Linear(16, 3),
    )


def test_default_prunable_are_conv_and_linear_weights_in_model_order():
    model = small_net()
    assert list(prunable_parameters(model)) == ["0.weight", "4.weight", "6.weight"]
    assert list(prunable_parameters(model, keep_classifier_dense=True)) == ["0.weight", "4.weight"]
    assert list(prunable_parameters(model, keep_first_layer_dense=True)) == ["4.weight", "6.weight"]
    assert list(prunable_parameters(model, exclude=["4.*"])) == ["0.weight", "6.weight"]
    assert "4.bias" in prunable_parameters(model, include=["4.bias"])
    assert list(prunable_parameters(model, module_types=[nn.Linear])) == ["4.weight", "6.weight"]
    with pytest.raises(ConfigError, match="match no parameter"):
        prunable_parameters(model, include=["nope.*"])


@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.5, 0.9, 0.98, 0.999])
@pytest.mark.parametrize("remove", ["lowest", "highest"])
def test_exact_count_global_and_layerwise(sparsity, remove):
    model = small_net()
    params = prunable_parameters(model)
    scores = {n: torch.randn_like(p) for n, p in params.items()}
    total = sum(p.numel() for p in params.values())
    mask = scores_to_mask(scores, sparsity, scope="global", remove=remove)
    assert mask.num_removed == round(sparsity * total)
    layerwise = scores_to_mask(scores, sparsity, scope="layerwise", remove=remove)
    assert layerwise.num_removed == round(sparsity * total)
    for m in layerwise.values():
        assert int(sparsity * m.numel()) <= (~m).sum() <= int(sparsity * m.numel()) + 1


def test_global_removes_the_right_end_and_per_layer_dict():
    scores = {"a": torch.tensor([5.0, 1.0, 3.0]), "b": torch.tensor([[2.0, 4.0], [0.0, 6.0]])}
    low = scores_to_mask(scores, 3 / 7, remove="lowest")
    assert low["a"].tolist() == [True, False, True]
    assert low["b"].tolist() == [[False, True], [False, True]]
    high = scores_to_mask(scores, 2 / 7, remove="highest")
    assert high["a"].tolist() == [False, True, True]
    assert high["b"].tolist() == [[True, True], [True, False]]
    per = scores_to_mask(scores, {"b": 0.5}, scope="per_layer")
    assert per["a"].all() and (~per["b"]).sum() == 2
    with pytest.raises(ConfigError, match="unknown parameters"):
        scores_to_mask(scores, {"c": 0.5}, scope="per_layer")


def test_ties_are_broken_by_position_deterministically():
    scores = {"a": torch.zeros(4), "b": torch.zeros(4)}
    mask = scores_to_mask(scores, 0.5)
    assert mask["a"].tolist() == [False] * 4 and mask["b"].all()
    high = scores_to_mask(scores, 0.25, remove="highest")
    assert high["a"].tolist() == [False, False, True, True]
    again = scores_to_mask(scores, 0.25, remove="highest")
    assert high.equal(again)


def test_previous_mask_stays_removed_and_sparsity_is_checked():
    scores = {"a": torch.arange(10.0)}
    previous = Mask({"a": torch.tensor([True] * 9 + [False])})  # the best weight already gone
    mask = scores_to_mask(scores, 0.3, previous=previous)
    assert mask["a"].tolist() == [False, False] + [True] * 7 + [False]
    with pytest.raises(ConfigError, match="must not be lower"):
        scores_to_mask(scores, 0.0, previous=previous)
    for bad in (1.0, -0.1, 1.5, "x"):
        with pytest.raises(ConfigError, match=r"\[0, 1\)"):
            scores_to_mask(scores, bad)
    with pytest.raises(ConfigError, match="NaN"):
        scores_to_mask({"a": torch.tensor([0.0, float("nan")])}, 0.5)


def test_exponential_schedule():
    steps = exponential_schedule(0.99, 4)
    assert len(steps) == 4 and steps[-1] == pytest.approx(0.99)
    densities = [1 - s for s in steps]
    ratios = [densities[i + 1] / densities[i] for i in range(3)]
    assert ratios == pytest.approx([densities[0]] * 3)
    assert exponential_schedule(0.5, 1) == [0.5]


def test_apply_report_and_collapse():
    model = small_net()
    params = prunable_parameters(model)
    mask = Mask.dense(params)
    mask["6.weight"][:] = False
    mask["4.weight"][0, :10] = False
    mask.apply(model)
    assert mask.holds_in(model)
    report = sparsity_report(mask, model)
    assert report.collapsed_layers == ["6.weight"]
    assert report.prunable_removed == 48 + 10
    assert report.model_total == sum(p.numel() for p in model.parameters())
    table = report.to_table()
    assert "COLLAPSED" in table and "whole model" in table
    data = report.to_dict()
    assert data["prunable"]["removed"] == 58 and data["collapsed_layers"] == ["6.weight"]
    json.dumps(data)


def test_mask_compatibility_errors():
    model = small_net()
    with pytest.raises(ConfigError, match="not a parameter"):
        Mask({"missing.weight": torch.ones(3, dtype=torch.bool)}).apply(model)
    with pytest.raises(ConfigError, match="shape"):
        Mask({"6.weight": torch.ones(3, dtype=torch.bool)}).apply(model)


def test_save_load_roundtrip_and_bad_files(tmp_path):
    model = small_net()
    params = prunable_parameters(model)
    mask = scores_to_mask({n: torch.randn_like(p) for n, p in params.items()}, 0.7)
    path = save_mask(mask, tmp_path / "mask.pt")
    assert load_mask(path).equal(mask)
    (tmp_path / "bad.pt").write_bytes(b"not a torch file at all")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_mask(tmp_path / "bad.pt")
    half = path.read_bytes()[: path.stat().st_size // 2]
    (tmp_path / "trunc.pt").write_bytes(half)
    with pytest.raises(CheckpointError):
        load_mask(tmp_path / "trunc.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_mask(tmp_path / "nope.pt")


def test_torch_prune_roundtrip():
    model = small_net()
    params = prunable_parameters(model)
    mask = scores_to_mask({n: p.abs() for n, p in params.items()}, 0.6)
    pruned = to_torch_prune(copy.deepcopy(model), mask)
    assert hasattr(pruned[4], "weight_orig") and hasattr(pruned[4], "weight_mask")
    x = torch.randn(2, 1, 8, 8)
    reference = mask.apply(copy.deepcopy(model))
    torch.testing.assert_close(pruned(x), reference(x))
    back = from_torch_prune(pruned)
    assert back.equal(mask)
    plain, from_sd = from_torch_prune_state_dict(pruned.state_dict())
    assert from_sd.equal(mask)
    fresh = small_net()
    fresh.load_state_dict(plain)
    assert mask.holds_in(fresh)
    # a model pruned by torch itself converts to the same mask prunekit computes
    theirs = copy.deepcopy(model)
    torch_prune.l1_unstructured(theirs[4], "weight", amount=50)
    ours = scores_to_mask({"4.weight": model[4].weight.abs()}, 50 / model[4].weight.numel())
    assert from_torch_prune(theirs)["4.weight"].sum() == ours["4.weight"].sum()
    from_torch_prune(theirs, make_permanent=True)
    assert not hasattr(theirs[4], "weight_orig")


def test_enforcer_adds_nothing_to_the_module():
    model = small_net()
    keys = list(model.state_dict())
    n_params = len(list(model.parameters()))
    mask = scores_to_mask(
        {n: torch.randn_like(p) for n, p in prunable_parameters(model).items()}, 0.5
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    MaskEnforcer(model, mask).attach(opt)
    assert list(model.state_dict()) == keys and len(list(model.parameters())) == n_params
    clone = copy.deepcopy(model)
    assert mask.holds_in(clone)
