"""F_RR⁻¹ kept up to date while R changes: every form and every update against the
explicit inverse of F_RR = λI + G_RᵀG_R/m."""

import pytest
import torch

from prunekit.second_order import l0_inverse
from prunekit.second_order.l0_inverse import ExplicitInverse, KernelInverse, kept_inverse


def dense_inverse(g, kept, damp):
    g_r = g[:, kept]
    f = g_r.T @ g_r / g.shape[0] + damp * torch.eye(len(kept), dtype=g.dtype)
    return torch.linalg.inv(f)


def check(inverse, g, kept_mask, damp, cache=True):
    kept = inverse.kept
    assert torch.equal(torch.sort(kept).values, kept_mask.nonzero().flatten())
    want = dense_inverse(g, kept, damp)
    v = torch.randn(len(kept), 3, dtype=g.dtype)
    torch.testing.assert_close(inverse.matmul(v), want @ v, rtol=1e-8, atol=1e-10)
    positions = torch.arange(len(kept))
    torch.testing.assert_close(
        inverse.diagonal_at(positions, cache=cache), want.diagonal(), rtol=1e-8, atol=1e-10
    )
    cols = (~kept_mask).nonzero().flatten()[:4]
    torch.testing.assert_close(inverse.cross(cols), g[:, kept].T @ g[:, cols] / g.shape[0])


@pytest.mark.parametrize("m,d", [(30, 20), (8, 40)])  # explicit (|R| ≤ m), kernel (|R| > m)
def test_updates_along_a_random_walk_of_kept_sets_are_exact(m, d):
    generator = torch.Generator().manual_seed(m)
    g = torch.randn(m, d, generator=generator, dtype=torch.float64)
    damp = 0.05
    kept = torch.rand(d, generator=generator) < 0.6
    inverse = kept_inverse(g, kept, damp)
    for step in range(25):
        flips = torch.randperm(d, generator=generator)[: 1 + step % 5]
        kept = kept.clone()
        kept[flips] = ~kept[flips]
        if not bool(kept.any()):
            kept[0] = True
        inverse = kept_inverse(g, kept, damp, inverse)
        check(inverse, g, kept, damp)


def test_kernel_form_rebases_past_its_rank_and_stays_exact():
    generator = torch.Generator().manual_seed(1)
    g = torch.randn(6, 50, generator=generator, dtype=torch.float64)
    kept = torch.ones(50, dtype=torch.bool)
    inverse = KernelInverse(g, kept, 0.1, max_rank=3)
    base = inverse.factor
    kept = kept.clone()
    kept[:2] = False
    inverse = inverse.updated(kept)
    assert inverse.factor is base and inverse.correction is not None
    check(inverse, g, kept, 0.1)
    kept = kept.clone()
    kept[2:10] = False
    inverse = inverse.updated(kept)
    assert inverse.factor is not base and inverse.correction is None
    check(inverse, g, kept, 0.1)


def test_kernel_form_rebases_by_downdating_its_kept_gram_and_stays_exact():
    """m ≤ d/8: the Gram is kept and a rebase downdates it (no new Gram over R) for at
    most MAX_DOWNDATES generations; each rebased inverse is still exact."""
    generator = torch.Generator().manual_seed(5)
    g = torch.randn(6, 200, generator=generator, dtype=torch.float64)
    assert l0_inverse.keeps_gram(g)
    kept = torch.ones(200, dtype=torch.bool)
    inverse = KernelInverse(g, kept, 0.05, max_rank=8)
    grams = []
    real_gram = l0_inverse.column_gram
    l0_inverse.column_gram = lambda *a, **k: grams.append(1) or real_gram(*a, **k)
    try:
        generations = []
        for step in range(12):  # 10 columns leave each time: past max_rank, a rebase
            kept = kept.clone()
            kept[10 * step : 10 * step + 10] = False
            inverse = inverse.updated(kept)
            assert inverse.correction is None
            generations.append(inverse.downdates)
            check(inverse, g, kept, 0.05, cache=False)
    finally:
        l0_inverse.column_gram = real_gram
    # eight downdated generations, then a fresh Gram (rounding drift), then downdates again
    assert l0_inverse.MAX_DOWNDATES == 8
    assert generations == [1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 2, 3]
    assert len(grams) == 1


def test_kernel_form_keeps_no_gram_where_it_would_be_large():
    """m > d/8 (MLPNet at m = 10,000): no m×m Gram is kept next to the factor."""
    g = torch.randn(20, 100, dtype=torch.float64)
    assert not l0_inverse.keeps_gram(g)
    inverse = KernelInverse(g, torch.ones(100, dtype=torch.bool), 0.1, max_rank=4)
    assert inverse.base_kernel is None
    kept = torch.ones(100, dtype=torch.bool)
    kept[:30] = False
    inverse = inverse.updated(kept)
    assert inverse.base_kernel is None and inverse.downdates == 0
    check(inverse, g, kept, 0.1, cache=False)


def test_explicit_form_is_rebuilt_after_many_updates():
    generator = torch.Generator().manual_seed(2)
    g = torch.randn(40, 12, generator=generator, dtype=torch.float64)
    kept = torch.ones(12, dtype=torch.bool)
    inverse = ExplicitInverse(g, kept.nonzero().flatten(), 0.1)
    for i in range(40):
        kept = kept.clone()
        kept[i % 12] = ~kept[i % 12]
        if not bool(kept.any()):
            kept[0] = True
        inverse = kept_inverse(g, kept, 0.1, inverse)
        assert inverse.updates <= 32
    check(inverse, g, kept, 0.1)


def test_transposed_restriction_is_the_same_fisher_and_the_solver_makes_no_second_copy():
    from prunekit.second_order import EmpiricalFisher
    from prunekit.second_order.l0_model import FactoredLocalModel

    generator = torch.Generator().manual_seed(3)
    g = torch.randn(7, 30, generator=generator, dtype=torch.float64)
    fisher = EmpiricalFisher(g, 0.1, [(0, 12), (12, 30)], dtype=torch.float64)
    keep = torch.rand(30, generator=generator) < 0.6
    plain, transposed = fisher.restricted(keep), fisher.restricted_transposed(keep)
    assert plain.blocks == transposed.blocks
    torch.testing.assert_close(plain.grads, transposed.grads)
    w = torch.randn(int(keep.sum()), generator=generator, dtype=torch.float64)
    model = FactoredLocalModel(w, transposed, None)
    assert model.grads_t.data_ptr() == transposed.grads.data_ptr()


def test_kernel_form_from_a_factor_computed_elsewhere_is_exact_and_rebases_without_it():
    # the Fisher's own Woodbury factor of the whole block seeds the inverse: no Gram is
    # formed for it; a later change past max_rank refactors from scratch (no kernel kept)
    from prunekit.second_order import EmpiricalFisher, l0_inverse

    generator = torch.Generator().manual_seed(2)
    g = torch.randn(6, 50, generator=generator, dtype=torch.float64)
    fisher = EmpiricalFisher(g, 0.1, dtype=torch.float64, method="woodbury")
    factor = fisher.block_factor(0)
    calls = []
    real_gram = l0_inverse.column_gram
    l0_inverse.column_gram = lambda *a, **k: calls.append(1) or real_gram(*a, **k)
    try:
        inverse = KernelInverse.from_factor(g, factor, 0.1)
        check(inverse, g, torch.ones(50, dtype=torch.bool), 0.1)
        kept = torch.ones(50, dtype=torch.bool)
        kept[[3, 17]] = False
        inverse = inverse.updated(kept)  # Woodbury on the given factor
        assert inverse.factor is factor and not calls
        check(inverse, g, kept, 0.1)
        inverse.max_rank = 2
        kept = kept.clone()
        kept[20:30] = False
        inverse = inverse.updated(kept)  # past the rank: refactored, one Gram
        assert inverse.factor is not factor and calls == [1]
        check(inverse, g, kept, 0.1)
    finally:
        l0_inverse.column_gram = real_gram


def test_kernel_form_solves_each_changed_column_once_per_base():
    generator = torch.Generator().manual_seed(3)
    g = torch.randn(7, 60, generator=generator, dtype=torch.float64)
    kept = torch.ones(60, dtype=torch.bool)
    inverse = KernelInverse(g, kept, 0.1, max_rank=20)
    kept = kept.clone()
    kept[:6] = False
    inverse = inverse.updated(kept)
    assert inverse.solves.used == 6
    for swap in range(4):  # one leaves, one joins: two new columns at most each time
        kept = kept.clone()
        kept[10 + swap] = False
        kept[swap] = True
        before = inverse.solves.used
        inverse = inverse.updated(kept)
        assert inverse.solves.used - before == 1  # the joined one was solved before
        check(inverse, g, kept, 0.1, cache=False)


def test_kernel_form_multiplies_only_the_new_columns_of_its_capacitance():
    """WᵀK_base⁻¹W of a correction: entries between columns of the previous correction
    are copied (bit for bit), the rest multiplied, and all equal the full product; the
    walk also returns columns to the base (a correction shrinks) and stays exact."""
    generator = torch.Generator().manual_seed(5)
    g = torch.randn(7, 60, generator=generator, dtype=torch.float64)
    kept = torch.ones(60, dtype=torch.bool)
    inverse = KernelInverse(g, kept, 0.1, max_rank=30)
    copied = 0
    for step in range(12):
        kept = kept.clone()
        flips = torch.randperm(60, generator=generator)[: 1 + step % 4]
        kept[flips] = ~kept[flips]
        previous = inverse.correction
        inverse = inverse.updated(kept)
        correction = inverse.correction
        if correction is None:
            continue
        torch.testing.assert_close(correction.products, correction.w.T @ correction.z)
        if previous is not None:
            for a, col_a in enumerate(correction.columns.tolist()):
                for b, col_b in enumerate(correction.columns.tolist()):
                    old = previous.columns.tolist()
                    if col_a in old and col_b in old:
                        want = previous.products[old.index(col_a), old.index(col_b)]
                        assert correction.products[a, b] == want
                        copied += 1
        check(inverse, g, kept, 0.1)
    assert copied > 50


def test_kernel_form_store_keeps_the_correction_columns_when_full():
    """Swap candidates overflow the store of K_base⁻¹ g_j: the correction's columns stay
    (no re-solve of all r at the next update), the candidates' solves stay exact."""
    generator = torch.Generator().manual_seed(6)
    g = torch.randn(7, 80, generator=generator, dtype=torch.float64)
    kept = torch.ones(80, dtype=torch.bool)
    inverse = KernelInverse(g, kept, 0.1, max_rank=8)  # the store holds 16 solves
    kept = kept.clone()
    kept[:6] = False
    inverse = inverse.updated(kept)
    correction = inverse.correction.columns
    for lo in range(10, 70, 6):  # candidates come and go: 60 columns through 16 slots
        columns = torch.arange(lo, lo + 6)
        want = torch.linalg.solve(
            g[:, kept] @ g[:, kept].T + 7 * 0.1 * torch.eye(7, dtype=g.dtype), g[:, columns]
        )
        torch.testing.assert_close(inverse.solve_columns(columns), want)
        assert bool((inverse.solves.where[correction] >= 0).all())
    before = inverse.solves.used
    kept = kept.clone()
    kept[6] = False  # one more leaves: only it is solved
    inverse = inverse.updated(kept)
    assert inverse.solves.used == before + 1
    check(inverse, g, kept, 0.1)


def test_explicit_form_swaps_in_place_and_leaves_the_old_one_unusable():
    """As many join as leave: the matrix is updated in place (no |R|×|R| copy), exact
    along a walk of swaps of 1-4 pairs; the object it came from refuses further use."""
    generator = torch.Generator().manual_seed(7)
    g = torch.randn(40, 30, generator=generator, dtype=torch.float64)
    kept = torch.zeros(30, dtype=torch.bool)
    kept[:18] = True
    inverse = kept_inverse(g, kept, 0.05)
    for step in range(10):
        inside = kept.nonzero().flatten()
        outside = (~kept).nonzero().flatten()
        pairs = 1 + step % 4
        leave = inside[torch.randperm(len(inside), generator=generator)[:pairs]]
        join = outside[torch.randperm(len(outside), generator=generator)[:pairs]]
        kept = kept.clone()
        kept[leave], kept[join] = False, True
        matrix = inverse.inverse
        previous, inverse = inverse, inverse.updated(kept)
        assert inverse.inverse is matrix  # the same memory
        assert previous.stale and not inverse.stale
        with pytest.raises(RuntimeError, match="updated in place"):
            previous.matmul(torch.ones(18, dtype=g.dtype))
        check(inverse, g, kept, 0.05)


def test_a_base_factor_past_reuse_is_let_go_before_the_new_gram():
    """The OBS start's factor handed to the solver is dropped before a backsolve that
    must refactor anyway (one m×m array less at the peak), with the same result as a
    model that never had it."""
    import weakref

    from prunekit.second_order import EmpiricalFisher
    from prunekit.second_order.l0_model import FactoredLocalModel

    generator = torch.Generator().manual_seed(4)
    g = torch.randn(6, 200, generator=generator, dtype=torch.float64)
    w = torch.randn(200, generator=generator, dtype=torch.float64)
    gradient = torch.randn(200, generator=generator, dtype=torch.float64) * 0.1
    fisher = EmpiricalFisher(g, 0.1, dtype=torch.float64, method="woodbury")
    removed = torch.zeros(200, dtype=torch.bool)
    removed[torch.randperm(200, generator=generator)[:100]] = True  # rank 100 > 64
    plain = FactoredLocalModel(w, fisher, gradient)
    x_plain, value_plain, _ = plain.backsolve(removed)[:3]

    factor = fisher.block_factor(0)
    alive = weakref.ref(factor)
    seeded = FactoredLocalModel(w, fisher, gradient, {0: factor})
    fisher.release_factors()
    del factor
    seen = []
    real_gram = l0_inverse.column_gram
    l0_inverse.column_gram = lambda *a, **k: seen.append(alive() is None) or real_gram(*a, **k)
    try:
        x, value, _ = seeded.backsolve(removed)[:3]
    finally:
        l0_inverse.column_gram = real_gram
    assert seen == [True]  # freed before the Gram was formed
    assert torch.equal(x, x_plain) and value == value_plain


def test_explicit_form_from_an_inverse_computed_elsewhere_is_exact_without_a_gram(monkeypatch):
    # the Fisher's own explicit F⁻¹ of a small block seeds the inverse; removing a few
    # weights is then a Schur complement of it, not a fresh Gram and inverse
    from prunekit.second_order import EmpiricalFisher

    generator = torch.Generator().manual_seed(4)
    g = torch.randn(40, 25, generator=generator, dtype=torch.float64)
    fisher = EmpiricalFisher(g, 0.1, dtype=torch.float64, method="explicit")
    built = []
    real_init = ExplicitInverse.__init__
    monkeypatch.setattr(
        ExplicitInverse, "__init__", lambda self, *a: built.append(1) or real_init(self, *a)
    )
    inverse = ExplicitInverse.from_inverse(g, fisher.block_factor(0), 0.1)
    check(inverse, g, torch.ones(25, dtype=torch.bool), 0.1)
    kept = torch.ones(25, dtype=torch.bool)
    kept[[2, 9, 20]] = False
    inverse = kept_inverse(g, kept, 0.1, inverse)
    assert not built
    check(inverse, g, kept, 0.1)


def test_a_small_kept_set_near_a_factored_kernel_is_a_woodbury_change_of_it(monkeypatch):
    # |R| ≤ m would take the explicit form, but the kernel factored over a few more
    # columns is a rank-r change away: cheaper than a fresh explicit inverse, and exact
    from prunekit.second_order import EmpiricalFisher

    generator = torch.Generator().manual_seed(5)
    g = torch.randn(30, 32, generator=generator, dtype=torch.float64)
    fisher = EmpiricalFisher(g, 0.1, dtype=torch.float64, method="woodbury")
    factor = fisher.block_factor(0)
    base = KernelInverse.from_factor(g, factor, 0.1)
    kept = torch.ones(32, dtype=torch.bool)
    kept[[1, 5, 7]] = False  # 29 ≤ m = 30 kept: explicit by size
    assert l0_inverse.woodbury_pays(base, kept, 30, 29)
    inverse = kept_inverse(g, kept, 0.1, base)
    assert not inverse.explicit and inverse.factor is factor
    check(inverse, g, kept, 0.1)
    few = torch.zeros(32, dtype=torch.bool)
    few[:4] = True  # 28 columns away from the base: a fresh 4×4 inverse is cheaper
    assert not l0_inverse.woodbury_pays(base, few, 30, 4)
    small = kept_inverse(g, few, 0.1, base)
    assert small.explicit
    check(small, g, few, 0.1)
