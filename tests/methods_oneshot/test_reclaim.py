"""Dead kept weights are given back to the count: the count is exact, no kept weight is
left on no path afterwards, earlier removals stay removed, and every method reports it."""

import pytest
import torch
from torch import nn

from prunekit.masks import prunable_parameters
from prunekit.methods.oneshot import CBSSettings, FisherSettings, prune_model
from prunekit.methods.oneshot.reclaim import on_path, reclaim_dead_weights


def chain(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(16, 12, bias=False), nn.ReLU(), nn.Linear(12, 6, bias=False),
        nn.ReLU(), nn.Linear(6, 3, bias=False),
    ).eval()


def data(n=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


def test_exchange_keeps_the_count_and_leaves_no_dead_weight():
    net = chain()
    names = list(prunable_parameters(net))
    weights = torch.cat([net.get_parameter(n).detach().reshape(-1) for n in names])
    d = weights.numel()
    removed = torch.ones(d, dtype=torch.bool)
    # keep: input 0 -> hidden 0 -> (nothing): dead; and a live path 1 -> 1 -> 1 -> out 0
    removed[0 * 16 + 0] = False  # layer 1: hidden 0 <- input 0 (hidden 0 feeds nothing)
    removed[1 * 16 + 1] = False  # layer 1: hidden 1 <- input 1
    removed[192 + 1 * 12 + 1] = False  # layer 2: h2 1 <- h1 1
    removed[192 + 72 + 0 * 6 + 1] = False  # layer 3: out 0 <- h2 1
    fixed = removed.clone()
    fixed[:] = False
    fixed[5] = True
    out = reclaim_dead_weights(net, names, weights, removed, (4, 4), fixed)
    assert out.dead_before == 1 and out.dead_after == 0
    assert int(out.removed.sum()) == int(removed.sum())
    assert bool(out.removed[0]) and bool(out.removed[5])
    live = on_path(net, names, out.removed, (4, 4))
    assert not bool((~out.removed & ~live).any())


@pytest.mark.parametrize("method", ["magnitude", "woodfisher", "cbs", "l0"])
def test_every_method_reports_and_reclaims_dead_weights(method):
    net = chain()
    kwargs = dict(
        fisher=FisherSettings(samples=80, damp=1e-2),
        loss_samples=150,
        settings=[CBSSettings(rmp_trials=2, max_passes=2)],
    )
    off = prune_model(net, method, 0.93, data(), reclaim_dead=False, **kwargs)
    on = prune_model(net, method, 0.93, data(), **kwargs)
    d = sum(p.numel() for p in net.parameters())
    for result in (off, on):
        removed = sum(int((~m).sum()) for m in result.mask.values())
        assert removed == round(0.93 * d)
    assert off.record.dead_weights_selected is None
    assert on.record.dead_weights_kept == 0
    assert on.record.dead_weights_selected is not None


def test_models_that_are_not_path_counters_are_left_alone():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8), nn.Linear(8, 3)).eval()
    x, y = torch.randn(100, 8), torch.randint(0, 3, (100,))
    result = prune_model(net, "magnitude", 0.9, (x, y))
    assert result.record.dead_weights_selected is None
