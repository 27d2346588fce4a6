import itertools
import math

import pytest
import torch
from second_order_reference import dense_fisher

from prunekit.second_order.cbs_select import (
    SwapState,
    cbs_select,
    magnitude_start,
    random_magnitude_mask,
    rmp_start,
)
from prunekit.second_order.fisher import layer_blocks, one_block


def problem(d, m, seed):
    generator = torch.Generator().manual_seed(seed)
    grads = torch.randn(m, d, generator=generator, dtype=torch.float64)
    w = torch.randn(d, generator=generator, dtype=torch.float64)
    return w, grads


def dense_loss(w, fisher, removed):
    """L(P) = w_Pᵀ F_PP w_P from the explicit (undamped) F."""
    u = torch.where(removed, w, torch.zeros_like(w))
    return (u @ fisher @ u).item()


@pytest.mark.parametrize("blocks", [None, layer_blocks([7, 6, 7])])
def test_swap_bookkeeping_matches_recomputed_loss(blocks):
    d, m = 20, 6
    w, grads = problem(d, m, seed=1)
    fisher = dense_fisher(grads, 0.0, blocks or one_block(d))
    removed = magnitude_start(w, 9)
    state = SwapState(w, grads, removed, blocks)
    assert state.loss() == pytest.approx(dense_loss(w, fisher, removed), rel=1e-12)

    # α and β are the exact one-weight changes of L.
    for i in removed.nonzero().flatten():
        without = removed.clone()
        without[i] = False
        expected = dense_loss(w, fisher, removed) - dense_loss(w, fisher, without)
        assert state.alpha(i[None]).item() == pytest.approx(expected, rel=1e-10, abs=1e-12)
    for j in (~removed).nonzero().flatten():
        with_j = removed.clone()
        with_j[j] = True
        expected = dense_loss(w, fisher, with_j) - dense_loss(w, fisher, removed)
        assert state.beta(j[None]).item() == pytest.approx(expected, rel=1e-10, abs=1e-12)

    generator = torch.Generator().manual_seed(2)
    for _ in range(40):
        inside = state.removed.nonzero().flatten()
        outside = (~state.removed).nonzero().flatten()
        i = inside[torch.randint(len(inside), (1,), generator=generator)].item()
        j = outside[torch.randint(len(outside), (1,), generator=generator)].item()
        before = state.loss()
        predicted = state.swap_delta(i, torch.tensor([j])).item()
        js = torch.tensor([j])
        by_terms = (state.beta(js) - state.gamma(i, js) - state.alpha(torch.tensor([i]))).item()
        state.swap(i, j)
        recomputed = dense_loss(w, fisher, state.removed)
        assert by_terms == pytest.approx(predicted, rel=1e-10, abs=1e-12)
        assert state.loss() == pytest.approx(recomputed, rel=1e-10)
        assert before + predicted == pytest.approx(recomputed, rel=1e-10, abs=1e-12)
    assert state.removed.sum() == 9
    fresh = SwapState(w, grads, state.removed, blocks)
    torch.testing.assert_close(state.y, fresh.y)


def exhaustive_minimum(w, grads, k):
    d, m = len(w), grads.shape[0]
    combos = torch.tensor(list(itertools.combinations(range(d), k)))
    masks = torch.zeros(len(combos), d, dtype=w.dtype).scatter_(1, combos, 1.0)
    y = (masks * w) @ grads.T
    return ((y * y).sum(1) / m).min().item()


def test_cbs_select_reaches_exhaustive_optimum_on_tiny_problems():
    instances, hits = 30, 0
    d, m, k = 16, 32, 8
    for seed in range(instances):
        w, grads = problem(d, m, seed)
        result = cbs_select(w, grads, magnitude_start(w, k), swap_threshold=1e-12)
        assert result.removed.sum() == k
        optimum = exhaustive_minimum(w, grads, k)
        assert result.loss >= optimum * (1 - 1e-9)
        hits += result.loss <= optimum * (1 + 1e-9)
    rate = hits / instances
    print(f"CBS-S reached the exhaustive optimum in {hits}/{instances} = {rate:.0%} of instances")
    assert rate >= 0.7


def test_history_records_decreasing_quadratic_loss():
    w, grads = problem(200, 30, seed=3)
    result = cbs_select(w, grads, magnitude_start(w, 100), swap_threshold=1e-9, rank_window=3)
    losses = [record.quadratic_loss for record in result.history]
    assert len(losses) >= 2
    assert all(b < a for a, b in zip(losses, losses[1:], strict=False))
    assert result.history[0].swaps == 0 and all(r.swaps > 0 for r in result.history[1:])
    assert result.loss == min(r.loss for r in result.history)


def test_outer_loop_uses_caller_loss_and_patience():
    w, grads = problem(200, 30, seed=4)
    calls = []

    def constant_loss(removed):
        calls.append(removed)
        return 1.0

    result = cbs_select(
        w,
        grads,
        magnitude_start(w, 100),
        constant_loss,
        swap_threshold=1e-9,
        patience=2,
        rank_window=1,
        max_failures=1,
    )
    assert len(result.history) <= 3  # the start, then at most `patience` passes
    assert len(calls) == len(result.history)
    assert result.best_pass == 0
    assert torch.equal(result.removed, magnitude_start(w, 100))


def test_magnitude_start_uses_absolute_values():
    w = torch.tensor([-5.0, 0.1, 3.0, -0.2, 1.0])
    assert magnitude_start(w, 2).tolist() == [False, True, False, True, False]


@pytest.mark.parametrize("d", [1, 10, 101, 1000])
def test_random_magnitude_mask_hits_exact_count_and_keeps_chunk_top(d):
    w = torch.randn(d, generator=torch.Generator().manual_seed(d), dtype=torch.float64) - 0.5
    for k in sorted({0, 1, d // 3, d * 9 // 10, d - 1, d}):
        removed = random_magnitude_mask(w, k, torch.Generator().manual_seed(7))
        assert removed.sum() == k
        # Replay the same shuffle: each chunk keeps its largest |w|, in proportion.
        order = torch.randperm(d, generator=torch.Generator().manual_seed(7))
        for chunk in torch.tensor_split(order, max(1, round(math.sqrt(d)))):
            kept, gone = w[chunk][~removed[chunk]].abs(), w[chunk][removed[chunk]].abs()
            if len(kept) and len(gone):
                assert kept.min() >= gone.max()
            assert abs(len(kept) - len(chunk) * (d - k) / d) < 1


def test_rmp_start_returns_best_trial():
    w, _ = problem(400, 1, seed=5)
    seen = []

    def loss(removed):
        value = float(torch.randn(1, generator=torch.Generator().manual_seed(len(seen))))
        seen.append((value, removed))
        return value

    best = rmp_start(w, 360, 8, torch.Generator().manual_seed(0), loss)
    assert best.sum() == 360
    assert torch.equal(best, min(seen, key=lambda pair: pair[0])[1])
    assert len(seen) == 8


def test_pass_at_high_sparsity_without_failure_limit():
    # |P| far exceeds the kept list: weights ranked past its end have no partner.
    w, grads = problem(60, 10, seed=6)
    start = magnitude_start(w, 55)
    result = cbs_select(w, grads, start, swap_threshold=1e-12, max_failures=10**6)
    assert result.removed.sum() == 55
    assert result.loss <= result.history[0].loss
