import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunekit.methods.init import grasp_scores
from prunekit.methods.init._double_backward import CheapDoubleBackward, _BatchNorm


def hessian_vector_products(model, x, y, cheap):
    """First gradients and H·v (w.r.t. parameters and input) with or without the mode."""
    params = list(model.parameters())
    generator = torch.Generator().manual_seed(0)
    v = [torch.randn(p.shape, generator=generator, dtype=p.dtype) for p in params]
    with CheapDoubleBackward() if cheap else torch.enable_grad():
        loss = F.cross_entropy(model(x), y)
        grads = torch.autograd.grad(loss, params, create_graph=True)
        z = sum((a * b).sum() for a, b in zip(v, grads, strict=True))
        hv = torch.autograd.grad(z, [*params, x])
    return [g.detach() for g in grads] + list(hv)


def assert_same_as_pytorch(model, x, y):
    """The cheap double backward gives PyTorch's own Hessian-vector products."""
    model(x)  # materialise lazy layers
    for a, b in zip(
        hessian_vector_products(model, x, y, False),
        hessian_vector_products(model, x, y, True),
        strict=True,
    ):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize(
    "conv",
    [
        lambda: nn.Conv2d(4, 4, 3, padding=1),
        lambda: nn.Conv2d(4, 4, 3, stride=2, padding=(0, 1), dilation=2, groups=2, bias=False),
        lambda: nn.Conv2d(4, 4, 3, padding="same"),  # string padding: PyTorch's own path
    ],
)
def test_same_first_and_second_derivatives_as_pytorch(conv, affine):
    torch.manual_seed(0)
    model = nn.Sequential(
        conv(), nn.BatchNorm2d(4, affine=affine), nn.Tanh(), nn.Flatten(), nn.LazyLinear(3)
    ).double()
    x = torch.randn(5, 4, 7, 7, dtype=torch.float64, requires_grad=True)
    y = torch.arange(5) % 3
    assert_same_as_pytorch(model, x, y)


def test_conv1d_and_batchnorm1d():
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv1d(3, 4, 3, padding=2), nn.BatchNorm1d(4), nn.Tanh(), nn.Flatten(), nn.LazyLinear(3)
    ).double()
    x = torch.randn(5, 3, 6, dtype=torch.float64, requires_grad=True)
    y = torch.arange(5) % 3
    assert_same_as_pytorch(model, x, y)


def test_batch_norm_second_derivatives_for_every_incoming_gradient():
    torch.manual_seed(2)
    x = torch.randn(4, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(3, dtype=torch.float64, requires_grad=True)

    def function(x, weight, bias):
        return _BatchNorm.apply(x, weight, bias, None, None, 0.1, 1e-3)

    assert torch.autograd.gradcheck(function, (x, weight, bias))
    assert torch.autograd.gradgradcheck(function, (x, weight, bias))


def test_running_statistics_updated_as_pytorch_does():
    torch.manual_seed(3)
    plain, cheap = nn.BatchNorm2d(3), nn.BatchNorm2d(3)
    x = torch.randn(4, 3, 5, 5)
    out_plain = plain(x)
    with CheapDoubleBackward():
        out_cheap = cheap(x)
    torch.testing.assert_close(out_cheap, out_plain)
    torch.testing.assert_close(cheap.running_mean, plain.running_mean)
    torch.testing.assert_close(cheap.running_var, plain.running_var)


def test_grasp_same_scores_with_and_without(tanh_bn_convnet, batches):
    model = tanh_bn_convnet()
    data = batches(2, 6, (2, 5, 5))
    fast = grasp_scores(model, data)
    slow = grasp_scores(model, data, fast_hvp=False)
    for name in fast.values:
        torch.testing.assert_close(fast.values[name], slow.values[name], rtol=1e-10, atol=1e-14)
