import copy

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from prunekit.masks import count_to_remove, prunable_parameters
from prunekit.methods.init import grasp_scores
from prunekit.methods.init._common import as_batches


def flat_scores(scores, names):
    return torch.cat([scores.values[n].reshape(-1) for n in names])


class Reference:
    """Σ_c L_c as a function of the flattened prunable weights, on a private copy."""

    def __init__(self, model, chunks, temperature):
        self.model = copy.deepcopy(model).train()
        self.names = list(prunable_parameters(self.model))
        params = dict(self.model.named_parameters())
        self.shapes = [params[n].shape for n in self.names]
        self.theta = torch.cat([params[n].detach().reshape(-1) for n in self.names])
        self.chunks = chunks
        self.temperature = temperature

    def loss(self, flat):
        weights, start = {}, 0
        for name, shape in zip(self.names, self.shapes, strict=True):
            size = shape.numel()
            weights[name] = flat[start : start + size].reshape(shape)
            start += size
        return sum(
            F.cross_entropy(functional_call(self.model, weights, (x,)) / self.temperature, y)
            for x, y in self.chunks
        )

    def grad(self, flat):
        flat = flat.detach().requires_grad_(True)
        return torch.autograd.grad(self.loss(flat), flat)[0]

    def grad_norm2(self, flat):
        return float(self.grad(flat).pow(2).sum())


@pytest.mark.parametrize("net", ["tanh_bn_mlp", "tanh_bn_convnet"])
@pytest.mark.parametrize("temperature", [1.0, 200.0])
def test_hg_equals_full_hessian_times_gradient(request, batches, net, temperature):
    model = request.getfixturevalue(net)()
    shape = (5,) if net == "tanh_bn_mlp" else (2, 5, 5)
    chunks = batches(3, 6, shape)
    scores = grasp_scores(model, chunks, temperature=temperature)

    ref = Reference(model, chunks, temperature)
    g = ref.grad(ref.theta)
    hessian = torch.autograd.functional.hessian(ref.loss, ref.theta)
    expected = -ref.theta * (hessian @ g)
    got = flat_scores(scores, ref.names)
    assert scores.remove == "highest"
    torch.testing.assert_close(got, expected, rtol=1e-7, atol=1e-12 * expected.abs().max())


def test_removing_one_weight_changes_squared_gradient_norm_by_two_s(tanh_bn_mlp, batches):
    model = tanh_bn_mlp()
    chunks = batches(2, 8, (5,))
    temperature = 2.0
    scores = grasp_scores(model, chunks, temperature=temperature)
    ref = Reference(model, chunks, temperature)
    s = flat_scores(scores, ref.names)
    eps = 1e-5
    # ‖g(θ with θ_q scaled by 1∓ε)‖²: the difference over 2ε is 2·S_q to first order,
    # i.e. removing q alone (ε = 1) changes ‖g‖² by ≈ 2·S_q.
    for q in torch.topk(s.abs(), 5).indices.tolist() + [0, len(s) - 1]:
        down, up = ref.theta.clone(), ref.theta.clone()
        down[q] *= 1 - eps
        up[q] *= 1 + eps
        slope = (ref.grad_norm2(down) - ref.grad_norm2(up)) / (2 * eps)
        assert slope == pytest.approx(2 * float(s[q]), rel=1e-5, abs=1e-9 * float(s.abs().max()))


def test_removes_the_highest_scores_exactly(tanh_bn_mlp, batches):
    model = tanh_bn_mlp()
    scores = grasp_scores(model, batches(2, 6, (5,)))
    names = list(scores.values)
    flat = flat_scores(scores, names)
    mask = scores.to_mask(0.4)
    removed = ~mask.flat()
    k = count_to_remove(0.4, flat.numel())
    assert int(removed.sum()) == k
    assert float(flat[removed].min()) >= float(flat[~removed].max())


def test_model_left_unchanged(tanh_bn_convnet, batches, model_state):
    snapshot, assert_unchanged = model_state
    model = tanh_bn_convnet()
    model.eval()
    model[1].train()  # a mixed mode must come back as it was
    before = snapshot(model)
    grasp_scores(model, batches(2, 4, (2, 5, 5)), reinit_linear_xavier=True)
    assert_unchanged(model, before)


@pytest.mark.parametrize("order", ["interleaved", "sorted"])
def test_chunk_size_spreads_every_class_over_the_chunks(tanh_bn_mlp, order):
    x = torch.randn(12, 5, dtype=torch.float64)
    y = torch.arange(12) % 3 if order == "interleaved" else torch.arange(12) // 4
    chunks = as_batches((x, y), chunk_size=6)
    assert len(chunks) == 2
    for _, targets in chunks:
        assert torch.bincount(targets, minlength=3).tolist() == [2, 2, 2]
    assert sorted(torch.cat([c[0] for c in chunks]).sum(1).tolist()) == sorted(x.sum(1).tolist())

    model = tanh_bn_mlp()
    whole = grasp_scores(model, (x, y), chunk_size=6)
    explicit = grasp_scores(model, chunks)
    for name in whole.values:
        torch.testing.assert_close(whole.values[name], explicit.values[name])


def test_xavier_reinit_only_in_scoring_and_seeded(tanh_bn_mlp, batches):
    model = tanh_bn_mlp()
    data = batches(2, 6, (5,))
    plain = grasp_scores(model, data)
    first = grasp_scores(
        model, data, reinit_linear_xavier=True, generator=torch.Generator().manual_seed(3)
    )
    again = grasp_scores(
        model, data, reinit_linear_xavier=True, generator=torch.Generator().manual_seed(3)
    )
    assert not torch.equal(plain.values["0.weight"], first.values["0.weight"])
    for name in first.values:
        assert torch.equal(first.values[name], again.values[name])


def test_params_restrict_hessian_block(tanh_bn_mlp, batches):
    model = tanh_bn_mlp()
    scores = grasp_scores(model, batches(2, 6, (5,)), params=["3.weight", "5.weight"])
    assert list(scores.values) == ["3.weight", "5.weight"]
