"""N:M semi-structured masks: exact pattern, tie order, dense fallback, invalid patterns."""

import pytest
import torch
from torch import nn

from prunekit.errors import ConfigError
from prunekit.masks import check_nm, nm_flat_keep, nm_keep, nm_mask, parse_pattern
from prunekit.methods.init import score_and_mask


def _groups_kept(keep: torch.Tensor, m: int) -> torch.Tensor:
    return keep.reshape(keep.shape[0], -1).reshape(-1, m).sum(dim=1)


def test_each_group_keeps_the_n_largest_scores():
    scores = torch.tensor([[4.0, 1.0, 3.0, 2.0, 0.5, 0.1, 0.9, 0.2]])
    keep = nm_keep(scores, 2, 4)
    assert keep.tolist() == [[True, False, True, False, True, False, True, False]]
    removed_high = nm_keep(scores, 2, 4, remove="highest")
    assert removed_high.tolist() == [[False, True, False, True, False, True, False, True]]


def test_ties_remove_the_earlier_weight_first():
    keep = nm_keep(torch.zeros(1, 4), 1, 4)
    assert keep.tolist() == [[False, False, False, True]]


def test_conv_groups_run_over_in_channels_and_kernel_per_output_channel():
    torch.manual_seed(0)
    scores = torch.randn(6, 4, 3, 3)  # 36 inputs per output channel
    keep = nm_keep(scores, 1, 4)
    rows = scores.reshape(6, 9, 4)
    expected = rows == rows.max(dim=2, keepdim=True).values
    assert torch.equal(keep.reshape(6, 9, 4), expected)
    assert check_nm(keep, 1, 4)


def test_magnitude_mask_on_a_model_is_exact_and_incompatible_layers_stay_dense():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 5), nn.Flatten(), nn.Linear(4 * 4 * 4, 8))
    mask = score_and_mask("magnitude", model, None, pattern="2:4")
    assert check_nm(mask, 2, 4)
    assert bool(mask["0.weight"].all())  # 1·5·5 = 25 inputs: not a multiple of 4
    assert (_groups_kept(mask["2.weight"], 4) == 2).all()
    expected = nm_keep(model[2].weight.abs(), 2, 4)
    assert torch.equal(mask["2.weight"], expected)


def test_snip_pattern_matches_the_snip_scores():
    from prunekit.methods.init.snip import snip_scores

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 12), nn.ReLU(), nn.Linear(12, 4))
    batch = (torch.randn(16, 8), torch.randint(0, 4, (16,)))
    mask = score_and_mask("snip", model, 0.5, data=batch, pattern="2:4")
    scores = snip_scores(model, [batch], params=["0.weight", "2.weight"])
    for name in ("0.weight", "2.weight"):
        assert torch.equal(mask[name], nm_keep(scores.values[name], 2, 4))
        assert (_groups_kept(mask[name], 4) == 2).all()
    assert mask.sparsity == pytest.approx(0.5)


def test_flat_keep_matches_the_per_tensor_masks():
    torch.manual_seed(1)
    shapes = [(4, 8), (3, 2, 2, 2), (5, 3)]
    flat = torch.randn(sum(torch.Size(s).numel() for s in shapes))
    keep = nm_flat_keep(flat, shapes, "1:2")
    first = nm_keep(flat[:32].reshape(4, 8), 1, 2).reshape(-1)
    assert torch.equal(keep[:32], first)
    assert bool(keep[32 + 24 :].all())  # rows of 3: dense
    assert int(keep[32 : 32 + 24].sum()) == 12


@pytest.mark.parametrize("bad", ["4:4", "0:4", "5:4", "2-4", "a:b", ""])
def test_invalid_patterns_are_rejected(bad):
    with pytest.raises(ConfigError):
        parse_pattern(bad)


def test_check_nm_rejects_a_broken_pattern_and_a_wrong_sparsity():
    keep = nm_keep(torch.randn(2, 8), 2, 4)
    keep[0, 0] = ~keep[0, 0]
    with pytest.raises(ConfigError, match="breaks the 2:4 pattern"):
        check_nm(keep, 2, 4)
    model = nn.Linear(8, 4)
    with pytest.raises(ConfigError, match="fixes the sparsity"):
        score_and_mask("magnitude", model, 0.9, pattern="2:4")
    with pytest.raises(ConfigError, match="no parameter can carry"):
        nm_mask({"w": torch.randn(3, 5)}, "2:4")
