"""One-shot methods on a model: exact counts, removed weights exactly zero, the right
update, against independent computations on a tiny network."""

import pytest
import torch
from oneshot_tiny import dense_kkt_update, tiny_problem, training_loss

from prunekit.errors import ConfigError
from prunekit.methods.oneshot import CBSSettings, get_method, prune_one_shot
from prunekit.methods.oneshot.flat import flatten_weights
from prunekit.second_order import EmpiricalFisher


def parts(name):
    spec = get_method(name)
    return spec.selection.name, spec.update.name


def test_method_names_presets_and_pairs():
    assert parts("cbs") == ("cbs_s", "cbs_u")
    assert parts("woodfisher") == ("obs", "woodfisher")
    assert parts("magnitude") == ("magnitude", "none")
    assert parts("grasp+cbs_u") == ("grasp", "cbs_u")
    assert parts("cbs-s") == ("cbs_s", "none")
    assert get_method(" CBS-S ").name == "cbs_s" and get_method("MAGNITUDE").name == "magnitude"
    assert get_method("magnitude + cbs_u").name == "magnitude+cbs_u"
    with pytest.raises(ConfigError, match="did you mean 'magnitude'"):
        get_method("magnitud")
    with pytest.raises(ConfigError, match="update"):
        get_method("magnitude+sgd")


@pytest.mark.parametrize(
    "method",
    [
        "magnitude",
        "layerwise_magnitude",
        "woodfisher",
        "obs+cbs_u",
        "cbs",
        "cbs_s",
        "magnitude+cbs_u",
        "magnitude+woodfisher",
    ],
)
@pytest.mark.parametrize("sparsity", [0.3, 0.7])
def test_exact_count_and_removed_exactly_zero(method, sparsity):
    model, names, x, y, grads = tiny_problem()
    fisher = EmpiricalFisher(grads, damp=1e-3, dtype=torch.float64)
    before = flatten_weights(model, names).clone()
    result = prune_one_shot(
        model,
        names,
        method,
        sparsity,
        fisher=fisher,
        training_loss=training_loss(model, names, x, y),
        settings=[CBSSettings(rmp_trials=3)],
        generator=torch.Generator().manual_seed(0),
    )
    d = before.numel()
    assert result.mask.num_removed == round(sparsity * d)
    for n in names:
        assert torch.all(result.weights[n][~result.mask[n]] == 0)
    assert torch.equal(flatten_weights(model, names), before), "the model must not change"


def test_cbs_u_after_magnitude_equals_kkt_solution():
    model, names, x, y, grads = tiny_problem(m=40)
    damp = 1e-2
    fisher = EmpiricalFisher(grads, damp=damp, dtype=torch.float64)
    result = prune_one_shot(model, names, "magnitude+cbs_u", 0.5, fisher=fisher)
    w = flatten_weights(model, names)
    removed = torch.cat([~result.mask[n].reshape(-1) for n in names])
    delta, F = dense_kkt_update(w, grads, damp, removed)
    new_w = torch.cat([result.weights[n].reshape(-1) for n in names])
    torch.testing.assert_close(new_w, w + delta, atol=1e-9, rtol=1e-7)
    predicted = 0.5 * delta @ F @ delta
    assert result.record.predicted_loss_change == pytest.approx(float(predicted), rel=1e-6)


def test_woodfisher_is_sum_of_single_weight_updates():
    model, names, x, y, grads = tiny_problem(m=40)
    fisher = EmpiricalFisher(grads, damp=1e-2, dtype=torch.float64)
    result = prune_one_shot(model, names, "woodfisher", 0.4, fisher=fisher)
    w = flatten_weights(model, names)
    d = w.numel()
    F = 1e-2 * torch.eye(d, dtype=torch.float64) + grads.T @ grads / grads.shape[0]
    Finv = torch.linalg.inv(F)
    removed = torch.cat([~result.mask[n].reshape(-1) for n in names])
    saliency = w**2 / (2 * Finv.diag())
    k = int(removed.sum())
    assert set(torch.sort(saliency, stable=True).indices[:k].tolist()) == set(
        removed.nonzero().flatten().tolist()
    )
    s = torch.zeros(d, dtype=torch.float64)
    s[removed] = w[removed] / Finv.diag()[removed]
    expected = w - Finv @ s
    expected[removed] = 0
    new_w = torch.cat([result.weights[n].reshape(-1) for n in names])
    torch.testing.assert_close(new_w, expected)


def test_cbs_needs_training_loss_and_fisher():
    model, names, x, y, grads = tiny_problem()
    with pytest.raises(ConfigError, match="Fisher"):
        prune_one_shot(model, names, "cbs", 0.5)
    fisher = EmpiricalFisher(grads, damp=1e-3, dtype=torch.float64)
    with pytest.raises(ConfigError, match="training data"):
        prune_one_shot(model, names, "cbs", 0.5, fisher=fisher)


def test_cbs_never_worse_than_its_start_on_training_loss():
    model, names, x, y, grads = tiny_problem(seed=3, m=128)
    fisher = EmpiricalFisher(grads, damp=1e-3, dtype=torch.float64)
    loss = training_loss(model, names, x, y)
    result = prune_one_shot(
        model,
        names,
        "cbs_s",
        0.6,
        fisher=fisher,
        training_loss=loss,
        settings=[CBSSettings(start="magnitude")],
    )
    start = prune_one_shot(model, names, "magnitude", 0.6)
    flat = lambda r: torch.cat([r.weights[n].reshape(-1) for n in names])  # noqa: E731
    assert loss(flat(result)) <= loss(flat(start)) + 1e-12


@pytest.mark.parametrize("first_order", [False, True])
def test_l0_with_earlier_removals_reaches_the_exhaustive_optimum_over_alive_weights(first_order):
    # an earlier stage's removals are zero and fixed: the solver works on the other
    # weights only; compare with every removal set that keeps the fixed ones removed
    import itertools

    from prunekit.methods.oneshot import L0Settings

    reached = 0
    for seed in range(4):
        model, names, x, y, grads = tiny_problem(seed=seed, m=40)
        w = flatten_weights(model, names)
        d = w.numel()
        fixed = torch.zeros(d, dtype=torch.bool)
        fixed[torch.randperm(d, generator=torch.Generator().manual_seed(seed))[:20]] = True
        with torch.no_grad():  # the fixed weights are zero, as after a stage
            start = 0
            for n in names:
                p = model.get_parameter(n)
                p.view(-1).mul_(~fixed[start : start + p.numel()])
                start += p.numel()
        w = flatten_weights(model, names)
        gradient = grads.mean(0) if first_order else None
        fisher = EmpiricalFisher(grads, 1e-2, dtype=torch.float64)
        k = 23  # 3 more of the 25 alive weights (2,300 removal sets)
        result = prune_one_shot(
            model, names, "l0", k / d, fisher=fisher, gradient=gradient,
            training_loss=training_loss(model, names, x, y), fixed_removed=fixed,
            settings=[L0Settings(max_swap_rounds=5)],
        )  # fmt: skip
        removed = ~torch.cat([result.mask[n].reshape(-1) for n in names])
        assert int(removed.sum()) == k and bool(removed[fixed].all())

        def objective(removal, w=w, grads=grads, gradient=gradient):
            delta, dense = dense_kkt_update(w, grads, 1e-2, removal, gradient)
            value = 0.5 * delta @ dense @ delta
            return float(value if gradient is None else value + gradient @ delta)

        alive = (~fixed).nonzero().flatten().tolist()
        best = float("inf")
        for extra in itertools.combinations(alive, 3):
            trial = fixed.clone()
            trial[list(extra)] = True
            best = min(best, objective(trial))
        found = objective(removed)
        assert found >= best - 1e-9
        new_w = torch.cat([result.weights[n].reshape(-1) for n in names])
        expected_delta, _ = dense_kkt_update(w, grads, 1e-2, removed, gradient)
        torch.testing.assert_close(new_w, w + expected_delta, rtol=1e-6, atol=1e-9)
        reached += found <= best + 1e-9 * abs(best) + 1e-12
    assert reached >= 3  # the optimum in most instances


@pytest.mark.parametrize("first_order", [False, True])
def test_l0_obs_start_uses_the_fisher_restricted_to_the_alive_weights(first_order):
    # the OBS warm start of a later stage: saliencies (w̃_q)² / (2 [F_AA⁻¹]_qq) with
    # w̃ = w̄_A − F_AA⁻¹ ḡ_A on the alive set A, from an explicit inverse of F_AA
    from prunekit.methods.oneshot.l0 import alive_start

    g = torch.Generator().manual_seed(3)
    m, d, damp = 30, 50, 1e-2
    grads = torch.randn(m, d, generator=g, dtype=torch.float64)
    w = torch.randn(d, generator=g, dtype=torch.float64)
    alive = torch.rand(d, generator=g) > 0.4
    gradient = grads.mean(0) if first_order else None
    sub = EmpiricalFisher(grads, damp, dtype=torch.float64).restricted_transposed(alive)
    k = 7
    mask = alive_start("obs", w[alive], sub, None if gradient is None else gradient[alive], k)

    ga = grads[:, alive]
    inverse = torch.linalg.inv(
        ga.T @ ga / m + damp * torch.eye(int(alive.sum()), dtype=torch.float64)
    )
    point = w[alive] if gradient is None else w[alive] - inverse @ gradient[alive]
    saliency = point**2 / (2 * inverse.diagonal())
    expected = torch.zeros_like(mask)
    expected[torch.sort(saliency, stable=True).indices[:k]] = True
    assert torch.equal(mask, expected) and int(mask.sum()) == k
    magnitude = alive_start("magnitude", w[alive], sub, None, k)
    assert torch.equal(
        magnitude.nonzero().flatten(), torch.sort(w[alive].abs()).indices[:k].sort().values
    )


@pytest.mark.parametrize("first_order", [False, True])
def test_l0_hands_its_backsolve_to_cbs_u_instead_of_solving_again(first_order, monkeypatch):
    # the L0 solver ends on the exact minimiser for its support: the update applies that
    # step (cbs_update is never called) and it equals CBS-U solved afresh on the mask
    from prunekit.methods.oneshot import L0Settings
    from prunekit.methods.oneshot import cbs as cbs_module
    from prunekit.second_order.cbs_update import cbs_update

    model, names, x, y, grads = tiny_problem(seed=1, m=40)
    w = flatten_weights(model, names)
    gradient = grads.mean(0) if first_order else None
    fisher = EmpiricalFisher(grads, 1e-2, dtype=torch.float64)
    monkeypatch.setattr(cbs_module, "cbs_update", lambda *a, **k: pytest.fail("solved again"))
    result = prune_one_shot(
        model, names, "l0", 0.6, fisher=fisher, gradient=gradient,
        training_loss=training_loss(model, names, x, y), settings=[L0Settings(max_swap_rounds=3)],
    )  # fmt: skip
    removed = ~torch.cat([result.mask[n].reshape(-1) for n in names])
    fresh = cbs_update(w, fisher, removed, gradient=gradient)
    new_w = torch.cat([result.weights[n].reshape(-1) for n in names])
    torch.testing.assert_close(new_w, fresh.weights, rtol=1e-7, atol=1e-10)
    assert result.record.predicted_loss_change == pytest.approx(fresh.loss_change, rel=1e-6)
