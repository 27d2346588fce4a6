"""GraSP with Hg as a forward difference of two gradients, against the exact product."""

import pytest
import torch
from torch import nn

from prunekit.errors import ConfigError
from prunekit.methods.init import grasp_scores


def conv_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 8 * 8, 10)
    )


def flat(scores) -> torch.Tensor:
    return torch.cat([v.flatten() for v in scores.values.values()])


def test_finite_difference_matches_exact_hvp_in_float64():
    model = conv_net().double()
    x, y = torch.randn(30, 3, 10, 10, dtype=torch.float64), torch.arange(30) % 10
    exact = flat(grasp_scores(model, [(x, y)]))
    approx = grasp_scores(model, [(x, y)], hvp="finite_difference")
    assert approx.remove == "highest"
    assert float((flat(approx) - exact).norm() / exact.norm()) < 1e-2


def test_finite_difference_keeps_nearly_the_same_weights_in_float32():
    model = conv_net()
    x, y = torch.randn(30, 3, 10, 10), torch.arange(30) % 10
    exact, approx = (
        flat(grasp_scores(model, [(x, y)])),
        flat(grasp_scores(model, [(x, y)], hvp="finite_difference")),
    )
    keep = len(exact) // 10  # 90% sparsity: the kept weights are the lowest scores
    kept_exact = set(torch.topk(-exact, keep).indices.tolist())
    kept_approx = set(torch.topk(-approx, keep).indices.tolist())
    assert len(kept_exact & kept_approx) / keep >= 0.97


def test_finite_difference_leaves_the_model_unchanged_and_checks_options():
    model = conv_net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.randn(20, 3, 10, 10), torch.arange(20) % 10
    grasp_scores(model, [(x, y)], hvp="finite_difference")
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    with pytest.raises(ConfigError, match="hvp"):
        grasp_scores(model, [(x, y)], hvp="taylor")
    with pytest.raises(ConfigError, match="fd_step"):
        grasp_scores(model, [(x, y)], hvp="finite_difference", fd_step=0.0)
