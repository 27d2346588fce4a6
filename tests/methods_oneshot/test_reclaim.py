"""Dead kept weights are given back to the count: the count is exact, no kept weight is
left on no path afterwards, earlier removals stay removed, and every method reports it."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from prunekit.errors import ConfigError
from prunekit.masks import prunable_parameters
from prunekit.methods.oneshot import CBSSettings, FisherSettings, prune_model
from prunekit.methods.oneshot.reclaim import on_path, reclaim_dead_weights, revive_rank
from prunekit.second_order import EmpiricalFisher


def chain(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(16, 12, bias=False),
        nn.ReLU(),
        nn.Linear(12, 6, bias=False),
        nn.ReLU(),
        nn.Linear(6, 3, bias=False),
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


def _one_dead_two_candidates():
    """A live path 1 -> 1 -> 1 -> out 0, a dead kept weight (hidden 0 <- input 0), and
    removed weights that would lie on that path (hidden 1 <- input j for every j)."""
    net = chain()
    names = list(prunable_parameters(net))
    weights = torch.cat([net.get_parameter(n).detach().reshape(-1) for n in names])
    removed = torch.ones(weights.numel(), dtype=torch.bool)
    for index in (0 * 16 + 0, 1 * 16 + 1, 192 + 1 * 12 + 1, 192 + 72 + 0 * 6 + 1):
        removed[index] = False
    return net, names, weights, removed


def test_the_rank_chooses_which_removed_weight_is_kept_instead():
    net, names, weights, removed = _one_dead_two_candidates()
    # removed weights that would lie on the live path (judged without the dead weight)
    candidates = removed & on_path(
        net, names, removed | ~on_path(net, names, removed, (4, 4)), (4, 4)
    )
    assert int(candidates.sum()) >= 2
    by_magnitude = reclaim_dead_weights(net, names, weights, removed, (4, 4))
    revived = (~by_magnitude.removed & removed).nonzero().flatten()
    assert len(revived) == 1
    expected = torch.where(candidates, weights.abs(), -torch.inf).argmax()
    assert int(revived[0]) == int(expected)
    # a rank that prefers the candidate of smallest |w̄| revives that one instead
    rank = torch.where(candidates, -weights.abs(), torch.zeros_like(weights))
    by_rank = reclaim_dead_weights(net, names, weights, removed, (4, 4), rank=rank)
    revived = (~by_rank.removed & removed).nonzero().flatten()
    assert int(revived[0]) == int(torch.where(candidates, rank, -torch.inf).argmax())
    assert int(revived[0]) != int(expected)
    assert by_rank.dead_after == 0 and int(by_rank.removed.sum()) == int(removed.sum())


def test_a_costly_rank_is_computed_only_when_a_weight_is_dead():
    net, names, weights, removed = _one_dead_two_candidates()
    calls = []

    def rank():
        calls.append(1)
        return weights.abs()

    live_only = removed.clone()
    live_only[0] = True  # the dead weight removed: nothing to reclaim
    live_only[1 * 16 + 2] = False  # a live one kept in its place (hidden 1 <- input 2)
    out = reclaim_dead_weights(net, names, weights, live_only, (4, 4), rank=rank)
    assert out.dead_before == 0 and calls == []
    reclaim_dead_weights(net, names, weights, removed, (4, 4), rank=rank)
    assert calls == [1]
    with pytest.raises(ConfigError, match="rank must be"):
        reclaim_dead_weights(net, names, weights, removed, (4, 4), rank=torch.zeros(3))


def test_second_order_methods_rank_by_the_obs_saliency_of_an_explicit_inverse():
    """revive_rank for a Fisher method is w²/(2[F⁻¹]_qq), F = GᵀG/m + λI inverted
    explicitly (d×d), and its Newton-point form with a mean gradient."""
    torch.manual_seed(1)
    d, m, damp = 12, 30, 0.05
    grads = torch.randn(m, d, dtype=torch.float64)
    w = torch.randn(d, dtype=torch.float64)
    fisher = EmpiricalFisher(grads, damp, dtype=torch.float64)
    explicit = torch.linalg.inv(grads.T @ grads / m + damp * torch.eye(d, dtype=torch.float64))
    problem = SimpleNamespace(fisher=fisher, gradient=None, weights=w)
    torch.testing.assert_close(revive_rank(True, problem)(), w * w / (2 * explicit.diagonal()))
    gradient = torch.randn(d, dtype=torch.float64) * 0.1
    problem.gradient = gradient
    newton = w - explicit @ gradient
    torch.testing.assert_close(
        revive_rank(True, problem)(), newton * newton / (2 * explicit.diagonal())
    )
    assert not any(fisher.has_factor(b) for b in range(len(fisher.blocks)))  # released
    torch.testing.assert_close(revive_rank(False, problem)(), w.abs())
