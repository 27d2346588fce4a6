"""Dead kept weights are given back to the count: the count is exact, no kept weight is
left on no path afterwards, earlier removals stay removed, and every method reports it."""

import pytest
import torch
from torch import nn

from prunekit.errors import ConfigError
from prunekit.masks import prunable_parameters
from prunekit.methods.oneshot import CBSSettings, FisherSettings, prune_model
from prunekit.methods.oneshot.prune import prune_one_shot
from prunekit.methods.oneshot.reclaim import on_path, reclaim_dead_weights


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
    assert on.record.dead_weights_selected is not None
    losses = on.record.reclaim_losses  # the exchange is declined where it raises the loss
    if losses is None or losses["exchanged"] <= losses["as_selected"]:
        assert on.record.dead_weights_kept == 0
    else:
        assert on.record.dead_weights_kept == on.record.dead_weights_selected


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


def _magnitude_case():
    """Magnitude at 0.9 on the chain leaves dead kept weights (found by the path count)."""
    torch.manual_seed(0)
    net = chain()
    names = list(prunable_parameters(net))
    plain = prune_one_shot(net, names, "magnitude", 0.9, reclaim_dead=False)
    removed = torch.cat([~plain.mask[n].reshape(-1) for n in names])
    live = on_path(net, names, removed, (4, 4))
    dead = ~removed & ~live
    assert int(dead.sum()) > 0
    return net, names, removed, dead


def _flat_removed(result, names):
    return torch.cat([~result.mask[n].reshape(-1) for n in names])


@pytest.mark.parametrize("exchange_is_better", [True, False])
def test_the_exchange_is_kept_only_where_it_lowers_the_training_loss(exchange_is_better):
    net, names, removed, dead = _magnitude_case()
    sign = -1.0 if exchange_is_better else 1.0

    def training_loss(w):  # the exchange zeroes the dead weights: rewarded or penalised
        return sign * float((w[dead] == 0).sum())

    result = prune_one_shot(
        net, names, "magnitude", 0.9, training_loss=training_loss, input_shape=(4, 4)
    )
    record = result.record
    losses = record.reclaim_losses
    assert record.dead_weights_selected == int(dead.sum())
    final = _flat_removed(result, names)
    assert int(final.sum()) == int(removed.sum())  # the count either way
    if exchange_is_better:
        assert losses["exchanged"] < losses["as_selected"]
        assert record.dead_weights_kept == 0 and bool(final[dead].all())
    else:
        assert losses["exchanged"] > losses["as_selected"]
        assert record.dead_weights_kept == record.dead_weights_selected
        assert torch.equal(final, removed)  # the selection's own mask, untouched


def test_without_a_training_loss_the_exchange_is_always_made():
    net, names, removed, dead = _magnitude_case()
    result = prune_one_shot(net, names, "magnitude", 0.9, input_shape=(4, 4))
    assert result.record.reclaim_losses is None
    assert result.record.dead_weights_kept == 0
    assert bool(_flat_removed(result, names)[dead].all())
