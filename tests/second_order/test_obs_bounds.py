"""The OBS selection computes [F⁻¹]_qq only where a weight can be among the k lowest
saliencies (bounds [1/F_qq, 1/λ]), and selects exactly what the full saliency vector
selects; diag(F⁻¹) at given positions equals the explicit inverse's diagonal there."""

import pytest
import torch

from prunekit.second_order.fisher import EmpiricalFisher, layer_blocks, one_block
from prunekit.second_order.obs import lowest_k_mask, obs_saliency, woodfisher_select

D = 60


def fisher_of(m, blocks, damp, seed, scale=1.0):
    generator = torch.Generator().manual_seed(seed)
    grads = scale * torch.randn(m, D, generator=generator, dtype=torch.float64)
    w = torch.randn(D, generator=generator, dtype=torch.float64)
    gradient = grads.mean(0)
    return w, gradient, EmpiricalFisher(grads, damp, blocks, dtype=torch.float64)


# m = 8 < every block: Woodbury form; m = 80 > every block: explicit form
@pytest.mark.parametrize("m", [8, 80])
@pytest.mark.parametrize("blocks", [one_block(D), layer_blocks([25, 35])])
def test_inverse_diagonal_at_positions_is_the_explicit_inverses(m, blocks):
    _, _, fisher = fisher_of(m, blocks, 0.05, seed=1)
    dense = torch.zeros(D, D, dtype=torch.float64)
    for s, e in blocks:
        g = fisher.grads[:, s:e]
        dense[s:e, s:e] = g.T @ g / m + 0.05 * torch.eye(e - s, dtype=torch.float64)
    expected = torch.linalg.inv(dense).diagonal()
    at = torch.tensor([0, 3, 24, 25, 26, 59])
    torch.testing.assert_close(fisher.inverse_diagonal_at(at), expected[at])
    torch.testing.assert_close(fisher.inverse_diagonal_at(torch.arange(D)), expected)
    assert fisher.inverse_diagonal_at(torch.tensor([], dtype=torch.long)).numel() == 0
    fisher.inverse_diagonal()  # cached: read from the cache from here on
    torch.testing.assert_close(fisher.inverse_diagonal_at(at), expected[at])


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("m", [8, 80])
@pytest.mark.parametrize("blocks", [one_block(D), layer_blocks([25, 35])])
@pytest.mark.parametrize("scale", [0.05, 3.0])  # F_qq close to λ, and far above it
def test_bounded_selection_equals_the_full_saliency_selection(first_order, m, blocks, scale):
    for seed in range(4):
        w, gradient, fisher = fisher_of(m, blocks, 0.05, seed, scale)
        gradient = gradient if first_order else None
        for k in (0, 1, 5, 17, 30, 59, 60):
            expected = lowest_k_mask(obs_saliency(w, fisher, gradient), k)
            fresh = EmpiricalFisher(fisher.grads, 0.05, blocks, dtype=torch.float64)
            assert torch.equal(woodfisher_select(w, fresh, k, gradient), expected), (seed, k)


def test_ties_are_broken_by_index_as_in_the_full_selection():
    w, _, fisher = fisher_of(8, one_block(D), 0.05, seed=2, scale=0.0)  # G = 0: F = λI
    w = torch.round(w)  # many equal saliencies w²λ/2
    for k in (3, 10, 31):
        expected = lowest_k_mask(obs_saliency(w, fisher), k)
        fresh = EmpiricalFisher(fisher.grads, 0.05, dtype=torch.float64)
        assert torch.equal(woodfisher_select(w, fresh, k), expected)


def test_few_removals_among_many_weights_solve_few_diagonal_entries(monkeypatch):
    # F_qq close to λ (small gradients, as on MLPNet): the bounds are tight, and the
    # diagonal is computed for a few more weights than are removed, not for all d
    w, gradient, fisher = fisher_of(8, one_block(D), 0.05, seed=3, scale=0.02)
    asked = []
    original = EmpiricalFisher.block_inverse_diagonal

    def counting(self, b, positions=None):
        asked.append(self.blocks[b][1] - self.blocks[b][0] if positions is None else len(positions))
        return original(self, b, positions)

    monkeypatch.setattr(EmpiricalFisher, "block_inverse_diagonal", counting)
    removed = woodfisher_select(w, fisher, 5, gradient)
    assert int(removed.sum()) == 5
    assert 5 <= sum(asked) <= 10
