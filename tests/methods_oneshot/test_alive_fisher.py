"""A Fisher over the alive weights only: a stage's earlier removals are held at zero, so
G need not be formed over them. Gradients over a coordinate subset are the full
gradients' columns; every method prunes the same with that Fisher as with the full
one; stages gather it so; mismatched coverings are refused."""

import pytest
import torch
from oneshot_tiny import tiny_problem, training_loss
from test_multistage import staged
from test_prune_model_api import trained_net

from prunekit.errors import ConfigError, PrunekitError
from prunekit.masks import prunable_parameters
from prunekit.methods.oneshot import L0Settings, prune_one_shot
from prunekit.methods.oneshot import multistage as multistage_module
from prunekit.methods.oneshot.evidence import (
    FisherSettings,
    TrainingEvidence,
    estimate_fisher,
    prune_with_evidence,
)
from prunekit.methods.oneshot.flat import flatten_weights
from prunekit.methods.oneshot.multistage import StageSettings
from prunekit.methods.oneshot.problem import OneShotProblem
from prunekit.methods.oneshot.update import local_model_change
from prunekit.second_order import EmpiricalFisher, minibatch_gradients, per_sample_gradients


def zero_some(model, names, count, seed):
    """Zero ``count`` random prunable weights in place (an earlier stage's removals)."""
    d = flatten_weights(model, names).numel()
    fixed = torch.zeros(d, dtype=torch.bool)
    fixed[torch.randperm(d, generator=torch.Generator().manual_seed(seed))[:count]] = True
    with torch.no_grad():
        start = 0
        for n in names:
            p = model.get_parameter(n)
            p.view(-1).mul_(~fixed[start : start + p.numel()])
            start += p.numel()
    return fixed


@pytest.mark.parametrize("weight_major", [False, True])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_gradients_over_coordinates_are_the_full_gradients_columns(weight_major, batch_size):
    model, names, x, y, _ = tiny_problem(seed=1, m=20)
    d = flatten_weights(model, names).numel()
    keep = torch.rand(d, generator=torch.Generator().manual_seed(0)) < 0.6
    full = minibatch_gradients(model, names, x, y, batch_size)  # 20 / 3: a short last batch
    part = minibatch_gradients(
        model, names, x, y, batch_size, weight_major=weight_major, coordinates=keep
    )
    assert part.shape == (full.shape[0], int(keep.sum()))
    assert part.T.is_contiguous() == weight_major
    torch.testing.assert_close(part, full[:, keep], rtol=0, atol=0)
    with pytest.raises(ConfigError, match="bool vector of length"):
        per_sample_gradients(model, names, x, y, coordinates=keep[:-1])


def test_a_fisher_estimate_over_coordinates_restricts_g_blocks_and_mean_gradient():
    model, names, x, y, _ = tiny_problem(seed=2, m=30)
    d = flatten_weights(model, names).numel()
    keep = torch.ones(d, dtype=torch.bool)
    keep[:30] = False  # the whole first layer, and part of no other: one block less
    settings = FisherSettings(samples=30, damp=1e-2, blocks="layer", first_order=True)
    full = estimate_fisher(model, names, x, y, settings)
    part = estimate_fisher(model, names, x, y, settings, coordinates=keep)
    assert part.coordinates is not None and torch.equal(part.coordinates, keep)
    assert part.fisher.dim == int(keep.sum()) and part.fisher.grads.T.is_contiguous()
    torch.testing.assert_close(part.fisher.grads, full.fisher.grads[:, keep], rtol=0, atol=0)
    torch.testing.assert_close(part.gradient, full.gradient[keep])
    assert part.fisher.blocks == full.fisher.restricted(keep).blocks
    assert len(part.fisher.blocks) == len(full.fisher.blocks) - 1
    every = estimate_fisher(model, names, x, y, settings, coordinates=torch.ones_like(keep))
    assert every.coordinates is None  # all weights: the plain estimate
    with pytest.raises(ConfigError, match="at least one weight"):
        estimate_fisher(model, names, x, y, settings, coordinates=torch.zeros_like(keep))


def both_problems(seed, first_order):
    """A tiny float64 problem with 20 weights zeroed and held removed, and the kwargs of
    prune_one_shot with the full Fisher and with the Fisher of the alive weights only."""
    model, names, x, y, _ = tiny_problem(seed=seed, m=40)
    fixed = zero_some(model, names, 20, seed)
    grads = per_sample_gradients(model, names, x, y)  # at the zeroed weights
    alive = ~fixed
    gradient = grads.mean(0) if first_order else None
    common = {"training_loss": training_loss(model, names, x, y), "fixed_removed": fixed}
    full = {"fisher": EmpiricalFisher(grads, 1e-2, dtype=torch.float64), "gradient": gradient}
    part = {
        "fisher": EmpiricalFisher(grads[:, alive], 1e-2, dtype=torch.float64),
        "gradient": None if gradient is None else gradient[alive],
    }
    return model, names, grads, fixed, {**common, **full}, {**common, **part}


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("method", ["l0", "cbs", "woodfisher", "obs+cbs_u", "magnitude+cbs_u"])
def test_the_fisher_of_the_alive_weights_prunes_as_the_full_one(method, first_order):
    model, names, _, _, full, part = both_problems(seed=3, first_order=first_order)
    d = flatten_weights(model, names).numel()
    settings = [L0Settings(max_swap_rounds=5)]
    generator = torch.Generator

    def run(kwargs):
        return prune_one_shot(
            model, names, method, 30 / d, settings=settings,
            generator=generator().manual_seed(0), **kwargs,
        )  # fmt: skip

    a, b = run(full), run(part)
    for n in names:
        assert torch.equal(a.mask[n], b.mask[n])
        torch.testing.assert_close(a.weights[n], b.weights[n], rtol=1e-9, atol=1e-12)
    assert a.record.predicted_loss_change == pytest.approx(
        b.record.predicted_loss_change, rel=1e-9, abs=1e-14
    )


@pytest.mark.parametrize("first_order", [False, True])
def test_woodfisher_with_the_alive_fisher_sums_single_obs_updates_of_f_restricted(first_order):
    # the sum of the single-weight OBS updates on the alive weights A, from an explicit
    # inverse of F_AA: δ_A = −F_AA⁻¹ (s + ḡ_A), s_q = w̃_q / [F_AA⁻¹]_qq on removed q,
    # with w̃ = w_A − F_AA⁻¹ḡ_A (the Newton point; w_A without ḡ); δ is zero off A
    model, names, grads, fixed, _, part = both_problems(seed=4, first_order=first_order)
    w = flatten_weights(model, names)
    d, alive = w.numel(), ~fixed
    result = prune_one_shot(model, names, "woodfisher", 30 / d, **part)
    removed = ~torch.cat([result.mask[n].reshape(-1) for n in names])
    ga = grads[:, alive]
    inverse = torch.linalg.inv(1e-2 * torch.eye(ga.shape[1], dtype=torch.float64) + ga.T @ ga / 40)
    g = torch.zeros(ga.shape[1], dtype=torch.float64) if not first_order else part["gradient"]
    newton = w[alive] - inverse @ g
    q = removed[alive]
    s = torch.zeros_like(newton)
    s[q] = newton[q] / inverse.diagonal()[q]
    expected = w.clone()
    expected[alive] = w[alive] - inverse @ (s + g)
    expected[removed] = 0.0
    new_w = torch.cat([result.weights[n].reshape(-1) for n in names])
    torch.testing.assert_close(new_w, expected, rtol=1e-7, atol=1e-10)


def test_stages_gather_g_over_the_alive_weights_only(monkeypatch):
    widths = []
    original = multistage_module.gather_evidence

    def recording(*args, **kwargs):
        evidence = original(*args, **kwargs)
        widths.append((evidence.fisher.fisher.dim, kwargs["fisher_coordinates"]))
        return evidence

    monkeypatch.setattr(multistage_module, "gather_evidence", recording)
    net = trained_net()
    result = staged(net, "l0", 0.8, StageSettings(count=3))
    d = flatten_weights(net, list(prunable_parameters(net))).numel()
    assert widths[0] == (d, None)  # stage 0: nothing removed yet, every weight
    for (width, coordinates), before in zip(widths[1:], result.stages, strict=False):
        assert coordinates is not None and width == int(coordinates.sum()) == d - before.removed


def test_mismatched_coverings_are_refused():
    model, names, grads, fixed, full, part = both_problems(seed=5, first_order=True)
    w = flatten_weights(model, names)
    d, alive = w.numel(), ~fixed
    with pytest.raises(ConfigError, match="the Fisher covers 10 weights"):
        OneShotProblem(model, names, w, 0.5, d // 2, fisher=EmpiricalFisher(grads[:, :10], 1e-2))
    with pytest.raises(ConfigError, match="mean gradient must have"):
        OneShotProblem(
            model, names, w, 0.5, d // 2, fisher=part["fisher"], gradient=full["gradient"],
            fixed_removed=fixed,
        )  # fmt: skip
    problem = OneShotProblem(
        model, names, w, 0.5, d // 2, fixed_removed=fixed, **{k: part[k] for k in ("fisher",)}
    )
    change = torch.zeros(d, dtype=torch.float64)
    change[fixed.nonzero()[0]] = 1.0
    with pytest.raises(PrunekitError, match="moves earlier removals"):
        local_model_change(problem, change)
    estimate = estimate_fisher(
        model, names, torch.randn(12, 6, dtype=torch.float64), torch.zeros(12, dtype=torch.long),
        FisherSettings(samples=12, damp=1e-2), coordinates=alive,
    )  # fmt: skip
    evidence = TrainingEvidence(full["training_loss"], estimate)
    other = fixed.clone()
    other[alive.nonzero()[0]] = True
    with pytest.raises(ConfigError, match="other weights than the alive ones"):
        prune_with_evidence(model, names, "l0", 0.8, evidence, None, [], 0, fixed_removed=other)
    with pytest.raises(ConfigError, match="other weights than the alive ones"):
        prune_with_evidence(model, names, "l0", 0.8, evidence, None, [], 0)
