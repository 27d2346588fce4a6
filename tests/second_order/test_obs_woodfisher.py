import pytest
import torch
from second_order_reference import dense_fisher, kkt_update

from prunekit.errors import ConfigError
from prunekit.second_order.fisher import EmpiricalFisher, layer_blocks, one_block
from prunekit.second_order.obs import (
    lowest_k_mask,
    obs_saliency,
    woodfisher_select,
    woodfisher_update,
)

D = 12


def problem(m, blocks, seed=0):
    generator = torch.Generator().manual_seed(seed)
    grads = torch.randn(m, D, generator=generator, dtype=torch.float64)
    w = torch.randn(D, generator=generator, dtype=torch.float64)
    damp = 0.02
    fisher = EmpiricalFisher(grads, damp, blocks, dtype=torch.float64)
    return w, fisher, dense_fisher(grads, damp, blocks)


@pytest.mark.parametrize("blocks", [one_block(D), layer_blocks([5, 7])])
@pytest.mark.parametrize("m", [4, 30])
def test_saliency_is_brute_force_single_weight_optimum(blocks, m):
    w, fisher, dense = problem(m, blocks)
    saliency = obs_saliency(w, fisher)
    for q in range(D):
        delta = kkt_update(dense, w, torch.tensor([q]))
        assert delta[q] == pytest.approx(-w[q].item())
        assert saliency[q].item() == pytest.approx(0.5 * (delta @ dense @ delta).item(), rel=1e-9)


@pytest.mark.parametrize("blocks", [one_block(D), layer_blocks([5, 7])])
def test_woodfisher_update_matches_explicit_formula(blocks):
    w, fisher, dense = problem(6, blocks)
    removed = torch.zeros(D, dtype=torch.bool)
    removed[[0, 3, 6, 10]] = True
    inverse = torch.linalg.inv(dense)
    s = torch.where(removed, w / inverse.diagonal(), torch.zeros_like(w))
    expected = w - inverse @ s
    expected[removed] = 0.0

    result = woodfisher_update(w, fisher, removed)

    torch.testing.assert_close(result.weights, expected)
    assert torch.all(result.weights[removed] == 0)
    delta = expected - w
    assert result.loss_change == pytest.approx(0.5 * (delta @ dense @ delta).item(), rel=1e-9)


def test_woodfisher_update_of_one_weight_is_exact_obs():
    w, fisher, dense = problem(6, one_block(D))
    removed = torch.zeros(D, dtype=torch.bool)
    removed[4] = True
    expected = w + kkt_update(dense, w, torch.tensor([4]))
    torch.testing.assert_close(woodfisher_update(w, fisher, removed).weights, expected)


def test_lowest_k_mask_exact_count_and_ties_by_index():
    scores = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0])
    assert lowest_k_mask(scores, 3).tolist() == [True, True, False, True, False]
    assert lowest_k_mask(scores, 0).sum() == 0
    assert lowest_k_mask(scores, 5).all()
    with pytest.raises(ConfigError):
        lowest_k_mask(scores, 6)
    with pytest.raises(ConfigError):
        lowest_k_mask(torch.tensor([0.0, float("nan")]), 1)


def test_woodfisher_select_is_global_across_blocks():
    w, fisher, _ = problem(6, layer_blocks([5, 7]))
    saliency = obs_saliency(w, fisher)
    removed = woodfisher_select(w, fisher, 5)
    assert removed.sum() == 5
    assert saliency[removed].max() <= saliency[~removed].min()


def test_mask_is_validated():
    w, fisher, _ = problem(6, one_block(D))
    with pytest.raises(ConfigError):
        woodfisher_update(w, fisher, torch.zeros(D))
