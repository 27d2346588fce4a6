"""Multi-stage one-shot pruning: one stage is exactly one-shot; at every stage the count
is exact and earlier removals stay removed; the first-order update is the KKT optimum."""

import copy

import pytest
import torch
from oneshot_tiny import dense_kkt_update, tiny_problem
from test_prune_model_api import trained_net, users_data

from prunekit.errors import ConfigError
from prunekit.masks import prunable_parameters
from prunekit.methods.oneshot import (
    CBSSettings,
    FisherSettings,
    UpdateSettings,
    prune_model,
    prune_one_shot,
)
from prunekit.methods.oneshot.evidence import as_dataset
from prunekit.methods.oneshot.flat import flatten_weights
from prunekit.methods.oneshot.multistage import StageSettings, prune_in_stages
from prunekit.second_order import EmpiricalFisher

FISHER = FisherSettings(samples=60, damp=1e-2)
FAST_CBS = CBSSettings(rmp_trials=2, max_passes=3)


def staged(net, method, sparsity, stages, fisher=FISHER, on_stage=None):
    return prune_in_stages(
        net,
        list(prunable_parameters(net)),
        method,
        sparsity,
        as_dataset(users_data()),
        stages=stages,
        fisher=fisher,
        loss_samples=120,
        settings=[FAST_CBS],
        samples_per_class=2,
        on_stage=on_stage,
    )


@pytest.mark.parametrize("method", ["magnitude", "woodfisher", "cbs", "l0"])
def test_one_stage_is_exactly_one_shot(method):
    net = trained_net()
    one = staged(net, method, 0.8, StageSettings(count=1)).result
    direct = prune_model(
        net,
        method,
        0.8,
        users_data(),
        fisher=FISHER,
        loss_samples=120,
        settings=[FAST_CBS],
        samples_per_class=2,
    )
    assert one.mask.equal(direct.mask)
    for name, value in direct.weights.items():
        assert torch.equal(one.weights[name], value)


@pytest.mark.parametrize("method", ["magnitude", "woodfisher", "cbs", "l0", "snip+cbs_u"])
@pytest.mark.parametrize("first_order", [False, True])
def test_every_stage_exact_and_earlier_removals_stay_removed(method, first_order):
    net = trained_net()
    before = copy.deepcopy(net.state_dict())
    names = list(prunable_parameters(net))
    d = sum(net.get_parameter(n).numel() for n in names)
    masks = []

    def record_mask(t, model):
        masks.append(flatten_weights(model, names) == 0)
        return {"zeros": int(masks[-1].sum())}

    fisher = FisherSettings(samples=60, damp=1e-2, first_order=first_order)
    out = staged(net, method, 0.9, StageSettings(count=4, schedule="linear"), fisher, record_mask)
    plan = [r.sparsity for r in out.stages]
    assert plan == pytest.approx([0.225, 0.45, 0.675, 0.9])
    for record, zeros in zip(out.stages, masks, strict=True):
        assert record.removed == round(record.sparsity * d)
        assert int(zeros.sum()) >= record.removed  # removed weights are exact zeros
    removed = [~torch.cat([out.result.mask[n].reshape(-1) for n in names])]
    assert int(removed[0].sum()) == round(0.9 * d)
    for earlier, later in zip(masks, masks[1:], strict=False):
        assert not bool((earlier & ~later).any()), "an earlier removal came back"
    assert not bool((masks[-1] ^ removed[0]).any())
    for name, value in before.items():
        assert torch.equal(net.state_dict()[name], value), "the model must not change"


def test_explicit_stages_and_bad_plans():
    net = trained_net()
    out = staged(net, "woodfisher", 0.9, StageSettings(sparsities=[0.5, 0.8, 0.9]))
    assert [r.sparsity for r in out.stages] == [0.5, 0.8, 0.9]
    with pytest.raises(ConfigError, match="increasing"):
        staged(net, "woodfisher", 0.9, StageSettings(sparsities=[0.8, 0.5, 0.9]))
    with pytest.raises(ConfigError, match="end at the target"):
        staged(net, "woodfisher", 0.9, StageSettings(sparsities=[0.5, 0.8]))


def test_first_order_update_is_the_kkt_optimum():
    model, names, x, y, grads = tiny_problem(m=40)
    damp = 1e-2
    fisher = EmpiricalFisher(grads, damp=damp, dtype=torch.float64)
    g = grads.mean(0) + 0.05  # a point that is not a minimum
    result = prune_one_shot(model, names, "magnitude+cbs_u", 0.5, fisher=fisher, gradient=g)
    w = flatten_weights(model, names)
    removed = torch.cat([~result.mask[n].reshape(-1) for n in names])
    delta, F = dense_kkt_update(w, grads, damp, removed, g)
    new_w = torch.cat([result.weights[n].reshape(-1) for n in names])
    torch.testing.assert_close(new_w, w + delta, atol=1e-9, rtol=1e-7)
    predicted = g @ delta + 0.5 * delta @ F @ delta
    assert result.record.predicted_loss_change == pytest.approx(float(predicted), rel=1e-6)


def test_every_stage_records_the_update_scale_it_chose():
    net = trained_net()
    grid = [0.0, 0.5, 1.0]
    out = prune_in_stages(
        net,
        list(prunable_parameters(net)),
        "cbs",
        0.8,
        as_dataset(users_data()),
        stages=StageSettings(count=3, schedule="linear"),
        fisher=FISHER,
        loss_samples=120,
        settings=[FAST_CBS, UpdateSettings(scale_grid=grid)],
        samples_per_class=2,
    )
    for record in out.stages:
        assert list(record.update_scale_losses) == grid
        losses = record.update_scale_losses
        assert record.update_scale == min(grid, key=lambda a: (losses[a], grid.index(a)))
    assert out.stages[-1].update_scale == out.result.record.update_scale


def _drawn_sets(net, samples, monkeypatch):
    """Run 3 stages of woodfisher and return the sample indices each stage's Fisher read."""
    from prunekit.methods.oneshot import multistage
    from prunekit.methods.oneshot.evidence import sample_order

    dataset = as_dataset(users_data())
    seeds = []
    real = multistage.gather_evidence

    def spy(*args, **kwargs):
        seeds.append(kwargs["seed"])
        return real(*args, **kwargs)

    monkeypatch.setattr(multistage, "gather_evidence", spy)
    out = staged(net, "woodfisher", 0.8, StageSettings(count=3, samples=samples))
    m = FISHER.samples
    drawn = [frozenset(sample_order(dataset, s)[:m]) for s in seeds]
    assert [r.sample_seed for r in out.stages] == seeds
    return drawn, seeds


def test_fresh_samples_every_stage_draws_a_new_set(monkeypatch):
    drawn, seeds = _drawn_sets(trained_net(), "fresh", monkeypatch)
    assert seeds[0] == 0, "stage 0 keeps the one-shot draw"
    assert len(set(seeds)) == 3
    for t in range(1, 3):
        for earlier in range(t):
            assert drawn[t] != drawn[earlier], f"stage {t} reused stage {earlier}'s samples"


def test_reuse_draws_the_same_set_every_stage(monkeypatch):
    drawn, seeds = _drawn_sets(trained_net(), "reuse", monkeypatch)
    assert seeds == [0, 0, 0] and drawn[0] == drawn[1] == drawn[2]


@pytest.mark.parametrize("method", ["cbs", "l0"])
def test_stage_zero_of_a_fresh_run_is_bit_identical_to_one_shot(method):
    """The first stage of a multi-stage run (first-order term on by default) equals a
    one-shot prune to the first stage's sparsity with the same settings, bit for bit."""
    net = trained_net()
    names = list(prunable_parameters(net))
    after_first = {}

    def keep_first(t, model):
        if t == 0:
            after_first.update({n: model.get_parameter(n).detach().clone() for n in names})
        return {}

    staged(net, method, 0.9, StageSettings(sparsities=[0.6, 0.9]), on_stage=keep_first)
    direct = prune_model(
        net,
        method,
        0.6,
        users_data(),
        fisher=FisherSettings(samples=60, damp=1e-2, first_order=True),
        loss_samples=120,
        settings=[FAST_CBS],
        samples_per_class=2,
    )
    for name, value in direct.weights.items():
        assert torch.equal(after_first[name], value)


def test_first_order_default_is_on_in_stages_and_off_in_one_shot():
    default = FisherSettings()
    assert default.first_order is None
    assert default.resolved(staged=True).first_order is True
    assert default.resolved(staged=False).first_order is False
    assert FisherSettings(first_order=False).resolved(staged=True).first_order is False


def test_stage_count_is_bounded():
    with pytest.raises(ConfigError, match="too large"):
        StageSettings(count=10**6)
    net = trained_net()
    d = sum(net.get_parameter(n).numel() for n in prunable_parameters(net))
    with pytest.raises(ConfigError, match="every stage must remove at least one weight"):
        staged(net, "magnitude", 2 / d, StageSettings(count=5, schedule="linear"))
