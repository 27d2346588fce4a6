import pytest
import torch
from second_order_reference import dense_fisher, kkt_update

from prunekit.errors import ResourceError
from prunekit.second_order.cbs_update import cbs_update, choose_solver
from prunekit.second_order.fisher import EmpiricalFisher, chunk_blocks, one_block
from prunekit.second_order.obs import woodfisher_update

D = 14
SOLVERS = ["removed", "kept", "gram", "auto"]


def problem(m, blocks, seed=0):
    generator = torch.Generator().manual_seed(seed)
    grads = torch.randn(m, D, generator=generator, dtype=torch.float64)
    w = torch.randn(D, generator=generator, dtype=torch.float64)
    damp = 0.01
    fisher = EmpiricalFisher(grads, damp, blocks, dtype=torch.float64)
    return w, fisher, dense_fisher(grads, damp, blocks)


def random_mask(count, seed):
    generator = torch.Generator().manual_seed(seed)
    removed = torch.zeros(D, dtype=torch.bool)
    removed[torch.randperm(D, generator=generator)[:count]] = True
    return removed


@pytest.mark.parametrize("blocks", [one_block(D), chunk_blocks([8, 6], 5)])
@pytest.mark.parametrize("m", [3, 9, 40])
@pytest.mark.parametrize("count", [1, 4, 10])
def test_all_routes_match_kkt_solution(blocks, m, count):
    w, fisher, dense = problem(m, blocks, seed=m + count)
    removed = random_mask(count, seed=count)
    q = removed.nonzero().flatten()
    expected_delta = kkt_update(dense, w, q)
    inverse = torch.linalg.inv(dense)
    expected_loss = 0.5 * w[q] @ torch.linalg.solve(inverse[q][:, q], w[q])
    for solver in SOLVERS:
        result = cbs_update(w, fisher, removed, solver=solver)
        torch.testing.assert_close(result.delta, expected_delta, rtol=1e-8, atol=1e-10)
        torch.testing.assert_close(result.weights, w + expected_delta, rtol=1e-8, atol=1e-10)
        assert torch.all(result.weights[removed] == 0)
        assert result.loss_change == pytest.approx(expected_loss.item(), rel=1e-8)
        quadratic = 0.5 * result.delta @ dense @ result.delta
        assert result.loss_change == pytest.approx(quadratic.item(), rel=1e-8)


def test_blocks_with_nothing_or_everything_removed():
    blocks = [(0, 4), (4, 9), (9, D)]
    w, fisher, dense = problem(5, blocks)
    removed = torch.zeros(D, dtype=torch.bool)
    removed[0:4] = True  # all of block 0
    removed[10] = True  # block 1 untouched
    expected = kkt_update(dense, w, removed.nonzero().flatten())
    for solver in SOLVERS:
        result = cbs_update(w, fisher, removed, solver=solver)
        torch.testing.assert_close(result.delta, expected)
        assert torch.all(result.delta[4:9] == 0)


def test_choose_solver_takes_fewest_operations():
    # few newly removed weights and a computed factor: the removed route is nearly free
    assert choose_solver(5, 100, 50, factor_ready=True) == "removed"
    # without the factor, forming it (as m×m) costs more than the Gram system
    assert choose_solver(5, 100, 50, factor_ready=False) == "gram"
    assert choose_solver(500, 100, 50) == "gram"
    assert choose_solver(500, 10, 50) == "kept"
    # the multi-stage case: 2,000 newly removed of 30,000, m = 10,000
    assert choose_solver(2000, 28000, 10000) == "gram"
    assert choose_solver(2000, 28000, 10000, factor_ready=True) == "removed"
    # late stages and single-stage high sparsity: fewer kept weights than samples
    assert choose_solver(1000, 9000, 10000) == "kept"
    assert choose_solver(30000, 3400, 10000) == "kept"


def test_forced_solver_respects_memory_limit():
    w, fisher, _ = problem(5, one_block(D))
    fisher.memory_limit = 100
    with pytest.raises(ResourceError):
        cbs_update(w, fisher, random_mask(4, 0), solver="kept")


def test_exact_update_never_predicts_more_loss_than_woodfisher():
    w, fisher, _ = problem(9, chunk_blocks([8, 6], 5))
    for count in (2, 7, 12):
        removed = random_mask(count, seed=count)
        exact = cbs_update(w, fisher, removed).loss_change
        assert exact <= woodfisher_update(w, fisher, removed).loss_change * (1 + 1e-12)


@pytest.mark.parametrize("blocks", [one_block(D), [(0, 4), (4, 9), (9, D)]])
@pytest.mark.parametrize("first_order", [False, True])
def test_removed_weights_already_zero_are_solved_on_the_others_only(blocks, first_order):
    # an earlier stage's removals (zero, removed again) drop out of the problem: the
    # result equals the dense KKT solve with all removed weights held at -w (= 0 there)
    w, fisher, dense = problem(6, blocks, seed=3)
    settled = torch.zeros(D, dtype=torch.bool)
    settled[[0, 1, 2, 3, 7, 11]] = True  # block 0 settled entirely
    w[settled] = 0.0
    removed = settled.clone()
    removed[[5, 12]] = True
    gradient = torch.randn(D, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    gradient = gradient if first_order else None
    q = removed.nonzero().flatten()
    r = (~removed).nonzero().flatten()
    expected = torch.zeros(D, dtype=torch.float64)
    expected[q] = -w[q]
    rhs = -dense[r][:, q] @ expected[q] - (0 if gradient is None else gradient[r])
    expected[r] = torch.linalg.solve(dense[r][:, r], rhs)
    for solver in SOLVERS:
        result = cbs_update(w, fisher, removed, solver=solver, gradient=gradient)
        torch.testing.assert_close(result.delta, expected, rtol=1e-8, atol=1e-10)
        value = 0.5 * expected @ dense @ expected
        if gradient is not None:
            value = value + gradient @ expected
        assert result.loss_change == pytest.approx(value.item(), rel=1e-8)


def test_restricted_fisher_is_the_submatrix_and_is_shared():
    blocks = [(0, 4), (4, 9), (9, D)]
    _w, fisher, dense = problem(6, blocks, seed=4)
    keep = torch.ones(D, dtype=torch.bool)
    keep[[0, 1, 2, 3, 6]] = False  # block 0 disappears
    sub = fisher.restricted(keep)
    assert sub.blocks == [(0, 4), (4, 9)]
    index = keep.nonzero().flatten()
    eye = torch.eye(len(index), dtype=torch.float64)
    torch.testing.assert_close(sub.matvec(eye), dense[index][:, index])
    assert fisher.restricted(keep.clone()) is sub
    assert fisher.restricted(torch.ones(D, dtype=torch.bool)) is fisher


@pytest.mark.parametrize("first_order", [False, True])
def test_woodfisher_holds_settled_weights_and_works_on_the_others(first_order):
    # the summed single-weight OBS step, written out with the explicit inverse of F
    # restricted to the weights that are not already removed and zero
    w, fisher, dense = problem(8, one_block(D), seed=5)
    settled = torch.zeros(D, dtype=torch.bool)
    settled[[1, 4, 9]] = True
    w[settled] = 0.0
    removed = settled.clone()
    removed[[2, 6]] = True
    gradient = torch.randn(D, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    gradient = gradient if first_order else None
    active = (~settled).nonzero().flatten()
    inverse = torch.linalg.inv(dense[active][:, active])
    w_a, removed_a = w[active], removed[active]
    g_a = torch.zeros_like(w_a) if gradient is None else gradient[active]
    newton = w_a - inverse @ g_a
    s = torch.where(removed_a, newton / inverse.diagonal(), torch.zeros_like(w_a))
    expected = torch.zeros(D, dtype=torch.float64)
    expected[active] = -inverse @ (g_a + s)
    expected[removed] = -w[removed]
    result = woodfisher_update(w, fisher, removed, gradient=gradient)
    torch.testing.assert_close(result.delta, expected, rtol=1e-8, atol=1e-10)
    assert torch.all(result.weights[removed] == 0)


@pytest.mark.parametrize("chunk,row_block", [(4096, 1024), (17, 5), (40, 64), (7, 1)])
def test_column_gram_equals_the_full_product_and_is_symmetric(chunk, row_block):
    from prunekit.second_order.fisher import column_gram

    g = torch.randn(61, 150, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    columns = torch.randperm(150, generator=torch.Generator().manual_seed(2))[:97]
    kernel = column_gram(g, columns, chunk=chunk, row_block=row_block)
    torch.testing.assert_close(kernel, g[:, columns] @ g[:, columns].T, rtol=1e-12, atol=1e-10)
    assert torch.equal(kernel, kernel.T)
    every = column_gram(g, None, chunk=chunk, row_block=row_block)
    torch.testing.assert_close(every, g @ g.T, rtol=1e-12, atol=1e-10)
