"""Small float64 networks for the pruning-at-init tests."""

import pytest
import torch
from torch import nn


@pytest.fixture
def tanh_bn_mlp():
    """Smooth MLP with batch norm (so Hessians and finite differences are exact)."""

    def build(seed: int = 0) -> nn.Module:
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Linear(5, 6),
            nn.BatchNorm1d(6),
            nn.Tanh(),
            nn.Linear(6, 4),
            nn.Tanh(),
            nn.Linear(4, 3),
        ).double()

    return build


@pytest.fixture
def tanh_bn_convnet():
    def build(seed: int = 0) -> nn.Module:
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Conv2d(2, 3, 3, padding=1, bias=False),
            nn.BatchNorm2d(3),
            nn.Tanh(),
            nn.Conv2d(3, 2, 3, stride=2),
            nn.Tanh(),
            nn.Flatten(),
            nn.Linear(2 * 2 * 2, 3),
        ).double()

    return build


@pytest.fixture
def relu_mlp_nobias():
    def build(seed: int = 0) -> nn.Module:
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Linear(6, 5, bias=False),
            nn.ReLU(),
            nn.Linear(5, 4, bias=False),
            nn.ReLU(),
            nn.Linear(4, 3, bias=False),
        ).double()

    return build


def make_batches(n_chunks: int, per_chunk: int, shape, classes: int = 3, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randn((per_chunk, *shape), generator=g, dtype=torch.float64),
            torch.arange(per_chunk) % classes,
        )
        for _ in range(n_chunks)
    ]


@pytest.fixture
def batches():
    return make_batches


def snapshot(model: nn.Module) -> dict:
    """Everything a scoring method must leave alone."""
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "modes": [m.training for m in model.modules()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
    }


def assert_unchanged(model: nn.Module, before: dict) -> None:
    after = snapshot(model)
    assert before["modes"] == after["modes"]
    for key, value in before["state"].items():
        assert torch.equal(value, after["state"][key]), key
    for a, b in zip(before["grads"], after["grads"], strict=True):
        assert (a is None and b is None) or torch.equal(a, b)


@pytest.fixture
def model_state():
    return snapshot, assert_unchanged
