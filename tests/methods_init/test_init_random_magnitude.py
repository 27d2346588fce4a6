import torch

from prunekit.methods.init import magnitude_scores, random_scores, score_and_mask


def test_same_seed_same_mask_bit_for_bit(relu_mlp_nobias):
    model = relu_mlp_nobias()
    masks = [
        random_scores(model, generator=torch.Generator().manual_seed(7)).to_mask(0.6)
        for _ in range(2)
    ]
    assert masks[0].equal(masks[1])
    other = random_scores(model, generator=torch.Generator().manual_seed(8)).to_mask(0.6)
    assert not masks[0].equal(other)
    again = score_and_mask("random", model, 0.6, generator=torch.Generator().manual_seed(7))
    assert again.equal(masks[0])


def test_magnitude_is_abs_and_removes_smallest(relu_mlp_nobias):
    model = relu_mlp_nobias()
    scores = magnitude_scores(model)
    assert scores.remove == "lowest"
    for name, value in scores.values.items():
        assert torch.equal(value, model.get_parameter(name).detach().abs())
    mask = scores.to_mask(0.5)
    flat = torch.cat([v.reshape(-1) for v in scores.values.values()])
    kept = mask.flat()
    assert float(flat[~kept].max()) <= float(flat[kept].min())
