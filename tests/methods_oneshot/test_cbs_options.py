"""CBS options: the update scale, the scale chosen on training loss, and CBS-S scored with
the update applied, against independent dense computations on a tiny network."""

import pytest
import torch
from oneshot_tiny import dense_kkt_update, tiny_problem, training_loss

from prunekit.errors import ConfigError
from prunekit.methods.oneshot import CBSSettings, UpdateSettings, prune_one_shot
from prunekit.methods.oneshot.flat import flatten_weights
from prunekit.pipelines.configs import OneShotConfig
from prunekit.second_order import EmpiricalFisher

DAMP = 1e-2


def flat_of(result, names):
    return torch.cat([result.weights[n].reshape(-1) for n in names])


def removed_of(result, names):
    return torch.cat([~result.mask[n].reshape(-1) for n in names])


def dense_obs_correction(w, grads, removed):
    """δ of the exact multi-weight OBS update from the dense KKT system, and F."""
    return dense_kkt_update(w, grads, DAMP, removed)


@pytest.mark.parametrize("scale", [0.0, 0.5, 1.0, 1.3])
def test_update_scale_multiplies_the_kept_weights_correction(scale):
    model, names, x, y, grads = tiny_problem(m=48)
    fisher = EmpiricalFisher(grads, damp=DAMP, dtype=torch.float64)
    result = prune_one_shot(
        model,
        names,
        "magnitude+cbs_u",
        0.5,
        fisher=fisher,
        settings=[UpdateSettings(scale=scale)],
    )
    w = flatten_weights(model, names)
    removed = removed_of(result, names)
    delta, dense_fisher = dense_obs_correction(w, grads, removed)
    expected = (w + scale * delta) * ~removed
    new_w = flat_of(result, names)
    torch.testing.assert_close(new_w, expected, atol=1e-9, rtol=1e-7)
    assert torch.all(new_w[removed] == 0)
    change = new_w - w
    predicted = 0.5 * change @ dense_fisher @ change
    assert result.record.update_scale == scale
    assert result.record.predicted_loss_change == pytest.approx(float(predicted), rel=1e-6)


def test_update_scale_zero_equals_no_update():
    model, names, x, y, grads = tiny_problem(m=48)
    fisher = EmpiricalFisher(grads, damp=DAMP, dtype=torch.float64)
    scaled = prune_one_shot(
        model, names, "magnitude+woodfisher", 0.6, fisher=fisher, settings=[UpdateSettings(scale=0)]
    )
    plain = prune_one_shot(model, names, "magnitude", 0.6)
    torch.testing.assert_close(flat_of(scaled, names), flat_of(plain, names))


def test_update_scale_grid_picks_the_lowest_training_loss():
    model, names, x, y, grads = tiny_problem(seed=2, m=48)
    fisher = EmpiricalFisher(grads, damp=DAMP, dtype=torch.float64)
    loss = training_loss(model, names, x, y)
    grid = (0.0, 0.25, 0.5, 0.75, 1.0)
    result = prune_one_shot(
        model,
        names,
        "magnitude+cbs_u",
        0.7,
        fisher=fisher,
        training_loss=loss,
        settings=[UpdateSettings(scale=7.0, scale_grid=grid)],
    )
    w = flatten_weights(model, names)
    removed = removed_of(result, names)
    delta, _ = dense_obs_correction(w, grads, removed)
    losses = [loss((w + a * delta) * ~removed) for a in grid]
    best = grid[min(range(len(grid)), key=lambda i: losses[i])]
    assert result.record.update_scale == best
    assert list(result.record.update_scale_losses) == list(grid)
    for a, value in zip(grid, losses, strict=True):
        assert result.record.update_scale_losses[a] == pytest.approx(value, rel=1e-9)
    torch.testing.assert_close(flat_of(result, names), (w + best * delta) * ~removed)


def test_update_scale_grid_needs_training_loss_and_finite_scales():
    model, names, x, y, grads = tiny_problem(m=48)
    fisher = EmpiricalFisher(grads, damp=DAMP, dtype=torch.float64)
    with pytest.raises(ConfigError, match="training data"):
        prune_one_shot(
            model,
            names,
            "magnitude+cbs_u",
            0.5,
            fisher=fisher,
            settings=[UpdateSettings(scale_grid=(0.5, 1.0))],
        )
    with pytest.raises(ConfigError, match="finite"):
        UpdateSettings(scale=float("nan"))


@pytest.mark.parametrize("with_update", [False, True])
def test_cbs_search_scores_masks_with_or_without_the_update(with_update):
    model, names, x, y, grads = tiny_problem(seed=3, m=96)
    fisher = EmpiricalFisher(grads, damp=DAMP, dtype=torch.float64)
    loss = training_loss(model, names, x, y)
    seen = []

    def recording_loss(flat):
        seen.append(flat.clone())
        return loss(flat)

    settings = CBSSettings(rmp_trials=4, score_with_update=with_update)
    result = prune_one_shot(
        model,
        names,
        "cbs",
        0.6,
        fisher=fisher,
        training_loss=recording_loss,
        settings=[settings],
        generator=torch.Generator().manual_seed(0),
    )
    w = flatten_weights(model, names)
    removed = removed_of(result, names)
    d = w.numel()
    assert int(removed.sum()) == round(0.6 * d)
    assert result.search.scored_with_update is with_update
    # The search's best score is the training loss of the weights the method returns
    # (with the update) or of the weights with the removed ones zeroed (without).
    history = result.search.history
    passes = [h.pass_index for h in history]
    best_loss = history[passes.index(result.search.best_pass)].loss
    delta, _ = dense_obs_correction(w, grads, removed)
    scored = (w + delta) * ~removed if with_update else w * ~removed
    assert best_loss == pytest.approx(loss(scored), rel=1e-9)
    # Every scored vector zeroes exactly the masks' removed count; with the update the
    # kept weights moved, without it they are the trained ones.
    for flat in seen[: settings.rmp_trials]:
        zero = flat == 0
        assert int(zero.sum()) >= round(0.6 * d)
        moved = not torch.equal(flat[~zero], w[~zero])
        assert moved is with_update


def test_cbs_score_with_update_never_worse_than_its_start_after_update():
    model, names, x, y, grads = tiny_problem(seed=5, m=96)
    fisher = EmpiricalFisher(grads, damp=DAMP, dtype=torch.float64)
    loss = training_loss(model, names, x, y)
    common = dict(fisher=fisher, training_loss=loss)
    searched = prune_one_shot(
        model,
        names,
        "cbs",
        0.7,
        settings=[CBSSettings(start="magnitude", score_with_update=True)],
        **common,
    )
    start = prune_one_shot(model, names, "magnitude+cbs_u", 0.7, **common)
    assert loss(flat_of(searched, names)) <= loss(flat_of(start, names)) + 1e-12


def test_oneshot_config_nests_each_methods_settings_with_their_own_defaults():
    config = OneShotConfig()
    assert config.update == UpdateSettings() and config.update.scale == 1.0
    assert config.update.scale_grid == []
    assert config.cbs == CBSSettings() and config.cbs.score_with_update is False
