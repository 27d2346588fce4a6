import torch
import torch.nn.functional as F
from torch.func import functional_call

from prunekit.masks import prunable_parameters
from prunekit.methods.init import snip_scores


def mask_gradient(model, chunks):
    """∂L/∂c at c = 1 for the masked forward θ ⊙ c, summed over the chunks."""
    names = list(prunable_parameters(model))
    params = dict(model.named_parameters())
    ones = {n: torch.ones_like(params[n], requires_grad=True) for n in names}
    total = 0.0
    for x, y in chunks:
        masked = {n: params[n].detach() * ones[n] for n in names}
        total = total + F.cross_entropy(functional_call(model, masked, (x,)), y)
    grads = torch.autograd.grad(total, list(ones.values()))
    return dict(zip(names, grads, strict=True))


def test_snip_is_abs_gradient_wrt_multiplicative_mask(tanh_bn_convnet, batches):
    model = tanh_bn_convnet().train()
    chunks = batches(2, 5, (2, 5, 5))
    expected = mask_gradient(model, chunks)
    scores = snip_scores(model, chunks)
    assert scores.remove == "lowest"
    assert list(scores.values) == list(expected)
    for name, value in expected.items():
        torch.testing.assert_close(scores.values[name], value.abs())


def test_single_batch_and_one_element_list_agree(tanh_bn_mlp, batches):
    model = tanh_bn_mlp()
    ((x, y),) = batches(1, 8, (5,))
    a = snip_scores(model, (x, y))
    b = snip_scores(model, [(x, y)])
    for name in a.values:
        assert torch.equal(a.values[name], b.values[name])


def test_model_left_unchanged(tanh_bn_mlp, batches, model_state):
    snapshot, assert_unchanged = model_state
    model = tanh_bn_mlp().eval()
    before = snapshot(model)
    snip_scores(model, batches(2, 6, (5,)))
    assert_unchanged(model, before)


def test_works_inside_no_grad(tanh_bn_mlp, batches):
    model = tanh_bn_mlp()
    with torch.no_grad():
        scores = snip_scores(model, batches(1, 6, (5,)))
    assert all(v.abs().sum() > 0 for v in scores.values.values())
