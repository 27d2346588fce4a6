"""The first-order term ḡᵀδ in the exact (CBS-U) and OBS/WoodFisher updates, checked
against the explicit d×d KKT system."""

import pytest
import torch
from second_order_reference import dense_fisher, kkt_update

from prunekit.errors import ConfigError
from prunekit.second_order.cbs_update import cbs_update
from prunekit.second_order.fisher import EmpiricalFisher, chunk_blocks, one_block
from prunekit.second_order.local_model import local_change, mean_gradient, newton_point
from prunekit.second_order.obs import obs_saliency, woodfisher_select, woodfisher_update

D = 24
SOLVERS = ["removed", "kept", "gram", "auto"]
BLOCKS = [one_block(D), chunk_blocks([10, 14], 6)]


def problem(m, blocks, seed, with_gradient=True, damp=0.05):
    generator = torch.Generator().manual_seed(seed)
    grads = torch.randn(m, D, generator=generator, dtype=torch.float64)
    grads += 0.5 * torch.randn(m, 1, generator=generator, dtype=torch.float64)  # correlated
    w = torch.randn(D, generator=generator, dtype=torch.float64)
    gradient = None
    if with_gradient:
        gradient = mean_gradient(grads) + 0.1 * torch.randn(D, generator=generator).double()
    fisher = EmpiricalFisher(grads, damp, blocks, dtype=torch.float64)
    return w, fisher, dense_fisher(grads, damp, blocks), gradient


def random_mask(count, seed):
    generator = torch.Generator().manual_seed(seed)
    removed = torch.zeros(D, dtype=torch.bool)
    removed[torch.randperm(D, generator=generator)[:count]] = True
    return removed


def model_value(dense, gradient, delta):
    value = 0.5 * delta @ dense @ delta
    return (value if gradient is None else value + gradient @ delta).item()


@pytest.mark.parametrize("blocks", BLOCKS)
@pytest.mark.parametrize("m", [4, 15, 60])
@pytest.mark.parametrize("count", [1, 9, 20])
@pytest.mark.parametrize("with_gradient", [False, True])
def test_every_route_solves_the_kkt_system(blocks, m, count, with_gradient):
    w, fisher, dense, gradient = problem(m, blocks, seed=m + count, with_gradient=with_gradient)
    removed = random_mask(count, seed=count)
    expected = kkt_update(dense, w, removed.nonzero().flatten(), gradient)
    for solver in SOLVERS:
        result = cbs_update(w, fisher, removed, solver=solver, gradient=gradient)
        torch.testing.assert_close(result.delta, expected, rtol=1e-8, atol=1e-9)
        assert torch.all(result.weights[removed] == 0)
        torch.testing.assert_close(result.weights[~removed], (w + expected)[~removed])
        assert result.loss_change == pytest.approx(
            model_value(dense, gradient, expected), rel=1e-8, abs=1e-10
        )


def test_closed_form_through_the_newton_point():
    """ḡᵀδ + ½δᵀFδ at the optimum = −½ḡᵀF⁻¹ḡ + ½ w̃_Qᵀ[(F⁻¹)_QQ]⁻¹w̃_Q, w̃ = w − F⁻¹ḡ."""
    w, fisher, dense, gradient = problem(7, BLOCKS[1], seed=3)
    removed = random_mask(11, seed=5)
    q = removed.nonzero().flatten()
    inverse = torch.linalg.inv(dense)
    newton = w - inverse @ gradient
    torch.testing.assert_close(newton_point(w, fisher, gradient), newton)
    expected = -0.5 * gradient @ inverse @ gradient
    expected += 0.5 * newton[q] @ torch.linalg.solve(inverse[q][:, q], newton[q])
    result = cbs_update(w, fisher, removed, gradient=gradient)
    assert result.loss_change == pytest.approx(expected.item(), rel=1e-9)


def test_block_with_nothing_removed_takes_the_newton_step():
    w, fisher, dense, gradient = problem(9, [(0, 10), (10, D)], seed=1)
    removed = torch.zeros(D, dtype=torch.bool)
    removed[12:16] = True  # block 0 keeps everything
    newton_step = -torch.linalg.solve(dense[:10, :10], gradient[:10])
    for solver in SOLVERS:
        result = cbs_update(w, fisher, removed, solver=solver, gradient=gradient)
        torch.testing.assert_close(result.delta[:10], newton_step)
    nothing = torch.zeros(D, dtype=torch.bool)
    result = cbs_update(w, fisher, nothing, gradient=gradient)
    torch.testing.assert_close(result.delta, -torch.linalg.solve(dense, gradient))


def test_zero_gradient_matches_no_gradient():
    w, fisher, _, _ = problem(8, BLOCKS[1], seed=2, with_gradient=False)
    removed = random_mask(10, seed=1)
    zero = torch.zeros(D, dtype=torch.float64)
    for solver in SOLVERS:
        plain = cbs_update(w, fisher, removed, solver=solver)
        assert torch.equal(plain.delta, cbs_update(w, fisher, removed, solver, None).delta)
        with_zero = cbs_update(w, fisher, removed, solver=solver, gradient=zero)
        torch.testing.assert_close(with_zero.delta, plain.delta, rtol=1e-12, atol=1e-12)
        assert with_zero.loss_change == pytest.approx(plain.loss_change, rel=1e-12)
    plain = woodfisher_update(w, fisher, removed)
    torch.testing.assert_close(woodfisher_update(w, fisher, removed, zero).delta, plain.delta)
    torch.testing.assert_close(obs_saliency(w, fisher, zero), obs_saliency(w, fisher))


@pytest.mark.parametrize("blocks", BLOCKS)
def test_saliency_with_gradient_is_single_weight_optimum(blocks):
    w, fisher, dense, gradient = problem(6, blocks, seed=4)
    saliency = obs_saliency(w, fisher, gradient)
    unconstrained = -0.5 * gradient @ torch.linalg.solve(dense, gradient)
    for q in range(D):
        delta = kkt_update(dense, w, torch.tensor([q]), gradient)
        best = model_value(dense, gradient, delta)
        assert saliency[q].item() == pytest.approx(best - unconstrained.item(), rel=1e-8)
    removed = woodfisher_select(w, fisher, 7, gradient)
    assert saliency[removed].max() <= saliency[~removed].min()


@pytest.mark.parametrize("blocks", BLOCKS)
def test_woodfisher_update_with_gradient_matches_explicit_formula(blocks):
    w, fisher, dense, gradient = problem(5, blocks, seed=6)
    removed = random_mask(6, seed=2)
    inverse = torch.linalg.inv(dense)
    newton = w - inverse @ gradient
    s = torch.where(removed, newton / inverse.diagonal(), torch.zeros_like(w))
    delta = -inverse @ (gradient + s)
    delta[removed] = -w[removed]
    result = woodfisher_update(w, fisher, removed, gradient)
    torch.testing.assert_close(result.delta, delta)
    assert torch.all(result.weights[removed] == 0)
    assert result.loss_change == pytest.approx(model_value(dense, gradient, delta), rel=1e-9)
    # one removed weight: the summed update is the exact one
    one = torch.zeros(D, dtype=torch.bool)
    one[3] = True
    exact = kkt_update(dense, w, torch.tensor([3]), gradient)
    torch.testing.assert_close(woodfisher_update(w, fisher, one, gradient).delta, exact)
    # and the exact update never predicts more than the summed one
    assert cbs_update(w, fisher, removed, gradient=gradient).loss_change <= result.loss_change


def test_local_change_and_gradient_shape_is_checked():
    w, fisher, dense, gradient = problem(5, BLOCKS[0], seed=7)
    assert local_change(w, fisher, gradient) == pytest.approx(model_value(dense, gradient, w))
    with pytest.raises(ConfigError, match="mean gradient"):
        cbs_update(w, fisher, random_mask(3, 0), gradient=gradient[:-1])
