"""Kept weights on no input-to-output path: the path counter against explicit unit
reachability (boolean products of the layers' masks) on random sparse chains."""

import pytest
import torch
from torch import nn

from prunekit.masks.paths import analysable, dead_kept_weights


def reachability_dead(masks):
    """Dead kept weights of a Linear chain by explicit reachability: unit j of layer l's
    input is reached from the inputs, unit i of its output reaches an output."""
    forward = [torch.ones(masks[0].shape[1], dtype=torch.bool)]
    for m in masks:
        forward.append((m & forward[-1][None, :]).any(1))
    backward = [torch.ones(masks[-1].shape[0], dtype=torch.bool)]
    for m in reversed(masks):
        backward.insert(0, (m & backward[0][:, None]).any(0))
    dead = []
    for layer, m in enumerate(masks):
        live = backward[layer + 1][:, None] & forward[layer][None, :]
        dead.append(m & ~live)
    return dead


@pytest.mark.parametrize("density", [0.05, 0.1, 0.2, 0.5])
@pytest.mark.parametrize("bias", [False, True])
def test_path_counter_matches_explicit_reachability(density, bias):
    generator = torch.Generator().manual_seed(int(density * 100) + bias)
    net = nn.Sequential(
        nn.Flatten(),
        nn.Linear(20, 12, bias=bias),
        nn.ReLU(),
        nn.Linear(12, 8, bias=bias),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(8, 5, bias=bias),
    )
    names = ["1.weight", "3.weight", "6.weight"]
    for _ in range(5):
        masks = [
            torch.rand(net.get_parameter(n).shape, generator=generator) < density for n in names
        ]
        dead = dead_kept_weights(net, names, masks, (4, 5))
        for got, want in zip(dead, reachability_dead(masks), strict=True):
            assert torch.equal(got, want)


def test_conv_channel_with_no_outgoing_weight_is_dead():
    net = nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(3 * 3 * 3, 4),
    )
    names = ["0.weight", "5.weight"]
    conv = torch.ones(3, 1, 3, 3, dtype=torch.bool)
    fc = torch.ones(4, 27, dtype=torch.bool)
    fc[:, 9:18] = False  # channel 1 feeds nothing
    dead = dead_kept_weights(net, names, [conv, fc], (1, 8, 8))
    assert dead[0][1].all() and not dead[0][0].any() and not dead[0][2].any()
    assert not dead[1].any()


def test_models_with_layer_norm_are_not_analysed():
    net = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    assert not analysable(net)
    masks = [torch.ones(4, 4, dtype=torch.bool), torch.ones(2, 4, dtype=torch.bool)]
    assert dead_kept_weights(net, ["0.weight", "2.weight"], masks, (4,)) is None
