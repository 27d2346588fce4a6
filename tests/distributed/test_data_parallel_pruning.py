"""Pruning on torch.distributed (2 CPU processes, gloo): scores and masks equal the
single-process ones on the same samples; every rank holds the same mask, bit for bit.

Tolerance: sharded scores sum the processes' parts in another order than one process
does, so they agree to float32 rounding (rtol 1e-5, atol 1e-6 of the largest score)."""

import pytest
import torch
import torch.distributed as dist
from torch import nn

from prunekit.masks import Mask
from prunekit.methods.init import grasp_scores, snip_scores
from prunekit.methods.oneshot import CBSSettings, FisherSettings, prune_model
from prunekit.pipelines.setup import agree_on_mask
from prunekit.training import launch_local

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="needs gloo"
)


def conv_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 16),
        nn.ReLU(),
        nn.Linear(16, 5),
    )


def sample(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g), torch.arange(n) % 5


def oneshot(net):
    x, y = sample(120, seed=1)
    result = prune_model(
        net,
        "cbs",
        0.8,
        (x, y),
        fisher=FisherSettings(samples=60, damp=1e-2),
        settings=[CBSSettings(rmp_trials=3, max_passes=3)],
    )
    return result


def _scores_and_masks(rank, world, out):
    net = conv_net()
    x, y = sample()
    batches = [(x[:20], y[:20]), (x[20:], y[20:])]
    snip = snip_scores(net, batches).values
    grasp = grasp_scores(net, batches).values
    result = oneshot(net)
    torch.manual_seed(rank)  # a different mask on each rank: rank 0's must win
    own = Mask({n: torch.rand(t.shape) > 0.5 for n, t in result.mask.items()})
    checksum = agree_on_mask(own, "a test mask")
    torch.save(
        {
            "snip": snip,
            "grasp": grasp,
            "mask": dict(result.mask.items()),
            "weights": result.weights,
            "agreed": dict(own.items()),
            "checksum": checksum,
        },
        out / f"rank{rank}.pt",
    )


def test_two_processes_score_and_prune_like_one(tmp_path):
    launch_local(_scores_and_masks, 2, tmp_path, timeout_s=120)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    net = conv_net()
    x, y = sample()
    batches = [(x[:20], y[:20]), (x[20:], y[20:])]
    single = {"snip": snip_scores(net, batches).values, "grasp": grasp_scores(net, batches).values}
    for kind in ("snip", "grasp"):
        for name, value in single[kind].items():
            scale = float(value.abs().max())
            for rank in ranks:
                torch.testing.assert_close(rank[kind][name], value, rtol=1e-5, atol=1e-6 * scale)
    alone = oneshot(net)
    for rank in ranks:
        for name, kept in alone.mask.items():
            assert torch.equal(rank["mask"][name], kept), "one-shot mask differs from 1 process"
            torch.testing.assert_close(rank["weights"][name], alone.weights[name])
    for name in ranks[0]["agreed"]:
        assert torch.equal(ranks[0]["agreed"][name], ranks[1]["agreed"][name])
    assert ranks[0]["checksum"] == ranks[1]["checksum"]
