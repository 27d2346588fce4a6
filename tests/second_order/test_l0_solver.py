"""The joint L0 solver against exhaustive search and the explicit d×d local model."""

import pytest
import torch
from second_order_reference import (
    dense_fisher,
    exhaustive_optimum,
    local_objectives,
)
from second_order_reference import (
    random_instance as instance,
)

from prunekit.errors import ConfigError
from prunekit.second_order import (
    EmpiricalFisher,
    cbs_select,
    cbs_update,
    l0_solve,
    lipschitz_constant,
    lowest_k_mask,
    magnitude_start,
    newton_point,
    woodfisher_select,
)
from prunekit.second_order.l0_model import FactoredLocalModel, KeptInverse
from prunekit.second_order.l0_swaps import improving_swaps

INSTANCES = 50


def reached(value, best):
    return value <= best + 1e-9 * abs(best) + 1e-12


def exact(w, fisher, removed, gradient):
    return cbs_update(w, fisher, removed, gradient=gradient).loss_change


@pytest.mark.parametrize("with_gradient", [False, True])
def test_reaches_the_exhaustive_optimum_more_often_than_cbs_s(with_gradient):
    solver_hits = cbs_hits = 0
    for seed in range(INSTANCES):
        w, grads, fisher, dense, gradient, k = instance(seed, with_gradient)
        best_mask, best = exhaustive_optimum(dense, w, k, gradient)
        result = l0_solve(w, fisher, k, gradient=gradient)
        assert result.objective >= best - 1e-9 * abs(best) - 1e-12  # nothing beats it
        solver_hits += reached(result.objective, best)

        newton = newton_point(w, fisher, gradient)
        cbs = cbs_select(
            newton,
            grads,
            magnitude_start(newton, k),
            lambda removed: exact(w, fisher, removed, gradient),  # noqa: B023
            blocks=fisher.blocks,
            swap_threshold=1e-12,
            rank_window=len(w),
            max_failures=len(w),
        )
        cbs_hits += reached(exact(w, fisher, cbs.removed, gradient), best)
    assert solver_hits >= 0.8 * INSTANCES
    assert solver_hits >= cbs_hits


@pytest.mark.parametrize("with_gradient", [False, True])
def test_result_is_the_exact_optimum_on_its_own_mask(with_gradient):
    for seed in range(6):
        w, _grads, fisher, dense, gradient, k = instance(seed, with_gradient)
        result = l0_solve(w, fisher, k, gradient=gradient)
        assert int(result.removed.sum()) == k
        assert torch.all(result.weights[result.removed] == 0)
        q = result.removed.nonzero().flatten()
        expected = local_objectives(dense, w, q[None, :], gradient).item()
        assert result.objective == pytest.approx(expected, rel=1e-9, abs=1e-12)
        update = cbs_update(w, fisher, result.removed, gradient=gradient)
        torch.testing.assert_close(result.weights, update.weights)
        values = [step.objective for step in result.history]
        assert all(b <= a + 1e-12 * abs(a) for a, b in zip(values, values[1:], strict=False))


def test_exactly_k_removed_always_and_fixed_stay_removed():
    generator = torch.Generator().manual_seed(0)
    for seed in range(12):
        w, _grads, fisher, dense, gradient, _k = instance(seed, seed % 2 == 0, d=12)
        fixed = torch.zeros(12, dtype=torch.bool)
        fixed[torch.randperm(12, generator=generator)[: seed % 4]] = True
        for k in range(int(fixed.sum()), 13):
            result = l0_solve(w, fisher, k, gradient=gradient, fixed_removed=fixed)
            assert int(result.removed.sum()) == k
            assert bool(result.removed[fixed].all())
            assert torch.all(result.weights[result.removed] == 0)
        k = int(fixed.sum()) + 4
        _mask, best = exhaustive_optimum(dense, w, k, gradient, fixed_removed=fixed)
        result = l0_solve(w, fisher, k, gradient=gradient, fixed_removed=fixed)
        assert result.objective >= best - 1e-9 * abs(best) - 1e-12


def test_never_worse_than_its_warm_start_and_several_starts_take_the_best():
    for seed in range(10):
        w, _grads, fisher, _dense, gradient, k = instance(seed, True)
        obs = woodfisher_select(w, fisher, k, gradient)
        magnitude = magnitude_start(w, k)
        from_obs = l0_solve(w, fisher, k, gradient=gradient, start=obs)
        assert from_obs.objective <= exact(w, fisher, obs, gradient) + 1e-12
        assert from_obs.history[0].objective == pytest.approx(exact(w, fisher, obs, gradient))
        from_magnitude = l0_solve(w, fisher, k, gradient=gradient, start=magnitude)
        both = l0_solve(w, fisher, k, gradient=gradient, start=[obs, magnitude])
        # the same up to rounding: inverses are updated from the previous run's
        assert both.objective == pytest.approx(
            min(from_obs.objective, from_magnitude.objective), rel=1e-10, abs=1e-14
        )


def test_backsolve_and_kept_inverse_match_dense_algebra():
    w, _grads, fisher, dense, gradient, _k = instance(3, True, d=14)
    model = FactoredLocalModel(w, fisher, gradient)
    removed = torch.zeros(14, dtype=torch.bool)
    removed[[0, 2, 3, 7, 11]] = True
    x, value, inverses = model.backsolve(removed)[:3]
    update = cbs_update(w, fisher, removed, gradient=gradient)
    torch.testing.assert_close(x, update.weights)
    assert value == pytest.approx(update.loss_change, rel=1e-10)
    delta = x - w
    grad = model.grad(x, model.g_delta(x))
    torch.testing.assert_close(grad, gradient + dense @ delta)
    assert grad[~removed].abs().max() < 1e-9  # stationary on the kept set
    for m in (3, 40):  # Woodbury (|R| > m) and explicit (|R| ≤ m) forms
        g = torch.randn(m, 9, dtype=torch.float64)
        f_rr = g.T @ g / m + 0.05 * torch.eye(9, dtype=torch.float64)
        inverse = KeptInverse(g, 0.05)
        assert inverse.explicit == (m >= 9)
        torch.testing.assert_close(inverse.diagonal, torch.linalg.inv(f_rr).diagonal())
        v = torch.randn(9, 2, dtype=torch.float64)
        torch.testing.assert_close(inverse.matmul(v), torch.linalg.solve(f_rr, v))


@pytest.mark.parametrize("m", [3, 40])  # kernel (Woodbury, |R| > m) and explicit forms
@pytest.mark.parametrize("removed_count", [2, 12])  # R most of a block, or under half
def test_backsolve_matches_the_dense_solve_and_returns_g_delta(m, removed_count):
    """Each form's step (the kernel form's push-through route: Gδ = −m·K⁻¹(λh + G_Rḡ_R)
    with no product for it) against a dense solve on R, two blocks, with a gradient;
    the returned G_b(x_b − w̄_b) against the product itself."""
    generator = torch.Generator().manual_seed(m + removed_count)
    d = 16
    grads = torch.randn(m, d, generator=generator, dtype=torch.float64)
    w = torch.randn(d, generator=generator, dtype=torch.float64)
    gradient = 0.3 * torch.randn(d, generator=generator, dtype=torch.float64)
    blocks = [(0, 7), (7, d)]
    fisher = EmpiricalFisher(grads, 0.05, blocks, dtype=torch.float64)
    dense = dense_fisher(grads, 0.05, blocks)
    removed = torch.zeros(d, dtype=torch.bool)
    removed[torch.randperm(d, generator=generator)[:removed_count]] = True
    model = FactoredLocalModel(w, fisher, gradient)
    solved = model.backsolve(removed)
    x, value, inverses, g_delta = solved.x, solved.objective, solved.inverses, solved.g_delta
    kept = (~removed).nonzero().flatten()
    # minimiser of ḡᵀδ + ½δᵀFδ with δ_Q = −w̄_Q: F_RR δ_R = −ḡ_R + F_RQ w̄_Q
    delta = -w.clone()
    delta[kept] = torch.linalg.solve(
        dense[kept][:, kept], -gradient[kept] + dense[kept][:, removed] @ w[removed]
    )
    torch.testing.assert_close(x, w + delta, rtol=1e-9, atol=1e-10)
    assert (x[removed] == 0).all()
    assert value == pytest.approx(float(gradient @ delta + 0.5 * delta @ dense @ delta), rel=1e-9)
    for (s, e), got in zip(blocks, g_delta, strict=True):
        torch.testing.assert_close(got, grads[:, s:e] @ (x[s:e] - w[s:e]), rtol=1e-9, atol=1e-10)
    # ∇φ(x) = ḡ + Fδ, from the kernel form's solve where it gives it (no product)
    torch.testing.assert_close(solved.gradient(model), gradient + dense @ delta)
    assert solved.gradient(model)[kept].abs().max() < 1e-9
    assert [c is None for c in solved.curvature] == [i.explicit for i in inverses]
    if m == 40:
        assert all(inverse.explicit for inverse in inverses)
    elif removed_count == 2:
        assert not any(inverse.explicit for inverse in inverses)


def test_kernel_backsolves_along_swaps_carry_their_column_sums_exactly():
    """Backsolves a few swaps apart (kernel form) update h = G_Q w̄_Q and G_Rḡ_R from the
    previous kept set's instead of reading G: each still equals the dense solve."""
    generator = torch.Generator().manual_seed(12)
    m, d = 4, 40
    grads = torch.randn(m, d, generator=generator, dtype=torch.float64)
    w = torch.randn(d, generator=generator, dtype=torch.float64)
    gradient = 0.3 * torch.randn(d, generator=generator, dtype=torch.float64)
    fisher = EmpiricalFisher(grads, 0.05, [(0, d)], dtype=torch.float64)
    dense = dense_fisher(grads, 0.05, [(0, d)])
    model = FactoredLocalModel(w, fisher, gradient)
    removed = torch.zeros(d, dtype=torch.bool)
    removed[:10] = True
    carried = 0
    for step in range(8):
        solved = model.backsolve(removed)
        kept = (~removed).nonzero().flatten()
        delta = -w.clone()
        delta[kept] = torch.linalg.solve(
            dense[kept][:, kept], -gradient[kept] + dense[kept][:, removed] @ w[removed]
        )
        torch.testing.assert_close(solved.x, w + delta, rtol=1e-9, atol=1e-10)
        carried += solved.inverses[0]._sums[2] > 0
        inside, outside = kept[step % len(kept)], removed.nonzero().flatten()[step % 10]
        removed = removed.clone()
        removed[inside], removed[outside] = True, False  # one swap
    assert carried >= 6


@pytest.mark.parametrize("with_gradient", [False, True])
def test_swap_prediction_is_the_exact_change(with_gradient):
    checked = 0
    for seed in range(6):
        w, _grads, fisher, dense, gradient, k = instance(seed, with_gradient, d=13)
        model = FactoredLocalModel(w, fisher, gradient)
        removed = magnitude_start(w, k)
        fixed = torch.zeros(13, dtype=torch.bool)
        x, value, inverses = model.backsolve(removed)[:3]
        grad = model.grad(x, model.g_delta(x))
        pairs = improving_swaps(model, x, grad, removed, fixed, inverses, candidates=13)
        checked += len(pairs)
        for pair in pairs:  # each prediction is exact for that swap alone
            trial = removed.clone()
            trial[pair.keep_out], trial[pair.free] = True, False
            after = local_objectives(dense, w, trial.nonzero().flatten()[None, :], gradient)
            assert pair.predicted == pytest.approx(after.item() - value, rel=1e-8, abs=1e-12)
            assert pair.predicted < 0
        assert all(a.predicted <= b.predicted for a, b in zip(pairs, pairs[1:], strict=False))
    assert checked >= 5


@pytest.mark.parametrize("with_gradient", [False, True])
def test_swap_prediction_is_exact_in_the_kernel_form_too(with_gradient):
    """|R| > m: the swap terms come through the m×m kernel (push-through), not F_RR⁻¹."""
    checked = 0
    for seed in range(4):
        generator = torch.Generator().manual_seed(seed)
        m, d, k = 4, 14, 4
        grads = torch.randn(m, d, generator=generator, dtype=torch.float64)
        w = torch.randn(d, generator=generator, dtype=torch.float64)
        gradient = grads.mean(0) if with_gradient else None
        fisher = EmpiricalFisher(grads, 0.05, [(0, d)], dtype=torch.float64)
        dense = dense_fisher(grads, 0.05, [(0, d)])
        model = FactoredLocalModel(w, fisher, gradient)
        removed = lowest_k_mask(-w.abs(), k)  # the largest removed: swaps must help
        x, value, inverses = model.backsolve(removed)[:3]
        assert not inverses[0].explicit  # |R| = 10 > m = 4
        grad = model.grad(x, model.g_delta(x))
        fixed = torch.zeros(d, dtype=torch.bool)
        pairs = improving_swaps(model, x, grad, removed, fixed, inverses, candidates=d)
        checked += len(pairs)
        for pair in pairs:
            trial = removed.clone()
            trial[pair.keep_out], trial[pair.free] = True, False
            after = local_objectives(dense, w, trial.nonzero().flatten()[None, :], gradient)
            assert pair.predicted == pytest.approx(after.item() - value, rel=1e-8, abs=1e-12)
    assert checked >= 4


def test_lipschitz_constant_is_the_largest_eigenvalue():
    w, _grads, fisher, dense, _gradient, _k = instance(3, False, d=14)
    largest = torch.linalg.eigvalsh(dense).max().item()
    assert lipschitz_constant(fisher, iterations=200) == pytest.approx(largest, rel=1e-6)
    assert lipschitz_constant(fisher, iterations=5) <= largest * (1 + 1e-12)


@pytest.mark.parametrize("iterations", [1, 2, 5, 30])
def test_lipschitz_from_the_kernel_factors_takes_the_same_iterates(iterations):
    # the power iteration in the m-dimensional space, through the factor of
    # mλI + G_bG_bᵀ, gives the estimate of the iteration through G_b, step for step
    generator = torch.Generator().manual_seed(5)
    grads = torch.randn(6, 40, generator=generator, dtype=torch.float64)
    grads[:, 20:] *= 3.0  # the second block has the larger eigenvalue
    fisher = EmpiricalFisher(grads, 0.05, [(0, 20), (20, 40)], dtype=torch.float64)
    assert fisher.methods == ["woodbury", "woodbury"]
    plain = lipschitz_constant(fisher, iterations=iterations)
    both = {b: fisher.block_factor(b) for b in (0, 1)}
    assert lipschitz_constant(fisher, iterations, factors=both) == pytest.approx(plain, rel=1e-12)
    one = {1: fisher.block_factor(1)}  # a block without a factor goes through G_b
    assert lipschitz_constant(fisher, iterations, factors=one) == pytest.approx(plain, rel=1e-12)
    largest = torch.linalg.eigvalsh(dense_fisher(grads, 0.05, fisher.blocks)).max().item()
    assert lipschitz_constant(fisher, 200, factors=both) == pytest.approx(largest, rel=1e-9)


def test_bad_arguments_are_config_errors():
    w, _grads, fisher, _dense, gradient, _k = instance(1, True, d=12)
    fixed = torch.zeros(12, dtype=torch.bool)
    fixed[:5] = True
    with pytest.raises(ConfigError, match="fixed"):
        l0_solve(w, fisher, 4, fixed_removed=fixed)
    with pytest.raises(ConfigError, match="start mask"):
        l0_solve(w, fisher, 6, fixed_removed=fixed, start=magnitude_start(w, 6) & ~fixed)
    with pytest.raises(ConfigError, match="start mask"):
        l0_solve(w, fisher, 6, start=magnitude_start(w, 5))
    with pytest.raises(ConfigError, match="empty list"):
        l0_solve(w, fisher, 6, start=[])
    with pytest.raises(ConfigError, match="mean gradient"):
        l0_solve(w, fisher, 6, gradient=gradient[:3])


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize(
    "m,d,k,method",
    [
        (12, 60, 40, "woodbury"),  # kernel form throughout
        (40, 44, 6, "woodbury"),  # kept sets ≤ m: Woodbury changes of the factored kernel
        (60, 40, 25, "explicit"),  # the Fisher's explicit F⁻¹ seeds the explicit form
    ],
)
def test_l0_from_the_fishers_own_factor_finds_the_same_solution(first_order, m, d, k, method):
    # seeding the backsolves with the factor of the whole block (what the OBS start
    # computed) changes the algebra's route, not the result
    from prunekit.second_order import EmpiricalFisher, l0_solve

    generator = torch.Generator().manual_seed(5)
    g = torch.randn(m, d, generator=generator, dtype=torch.float64)
    w = torch.randn(d, generator=generator, dtype=torch.float64)
    gradient = g.mean(0) if first_order else None
    fisher = EmpiricalFisher(g, 0.05, dtype=torch.float64, method=method)
    start = torch.zeros(d, dtype=torch.bool)
    start[torch.sort(w.abs()).indices[:k]] = True
    plain = l0_solve(w, fisher, k, gradient=gradient, start=start, max_swap_rounds=10)
    factors = {0: fisher.block_factor(0)}
    seeded = l0_solve(
        w, fisher, k, gradient=gradient, start=start, max_swap_rounds=10, base_factors=factors
    )
    assert not factors  # consumed
    assert torch.equal(seeded.removed, plain.removed)
    torch.testing.assert_close(seeded.weights, plain.weights, rtol=1e-9, atol=1e-11)
    assert seeded.objective == pytest.approx(plain.objective, rel=1e-9)
