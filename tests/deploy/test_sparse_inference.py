"""Sparse CPU inference equals the dense masked model within float rounding."""

import pytest
import torch
from deploy_models import MODEL_INPUTS
from torch import nn

from prunekit.deploy import SparseConv2d, SparseLinear, sparse_layers, sparsify_for_inference
from prunekit.errors import ConfigError


def _close(sparse_out: torch.Tensor, dense_out: torch.Tensor) -> None:
    """The stated tolerance: |sparse − dense| ≤ 1e-4 · (1 + max|dense|) elementwise."""
    bound = 1e-4 * (1 + dense_out.abs().max())
    assert (sparse_out - dense_out).abs().max() <= bound


@pytest.mark.parametrize("name", list(MODEL_INPUTS))
def test_every_layer_sparse_matches_the_dense_masked_model(masked_model, name):
    model, _ = masked_model(name, 0.9)
    x = torch.randn(3, *MODEL_INPUTS[name])
    fast = sparsify_for_inference(model, crossover=1.0)
    layers = [n for n, m in model.named_modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    assert sparse_layers(fast) == layers
    with torch.no_grad():
        _close(fast(x), model(x))
        _close(fast(x[:1]), model(x[:1]))


def test_crossover_by_layer_type_leaves_dense_layers_dense(masked_model):
    model, _ = masked_model("lenet5_caffe", 0.95)
    fast = sparsify_for_inference(model, crossover={"Linear": 1.0})
    assert sparse_layers(fast) == ["fc1", "fc2"]
    assert sparse_layers(sparsify_for_inference(model, crossover=0.0)) == []
    assert sparse_layers(model) == []  # the original is left alone


def test_timed_choice_keeps_outputs_and_only_drops_layers(masked_model):
    model, _ = masked_model("lenet_300_100", 0.98)
    x = torch.randn(4, 1, 28, 28)
    fast = sparsify_for_inference(model, crossover=1.0, example_input=x, repeats=2)
    assert set(sparse_layers(fast)) <= {"fc1", "fc2", "fc3"}
    with torch.no_grad():
        _close(fast(x), model(x))


def test_strided_dilated_conv_with_bias():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2)).eval()
    with torch.no_grad():
        conv.weight.mul_(torch.rand_like(conv.weight) < 0.3)
    x = torch.randn(2, 3, 9, 7)
    with torch.no_grad():
        _close(SparseConv2d(conv)(x), conv(x))


def test_sparse_modules_refuse_training_mode_and_grouped_convs():
    linear = SparseLinear(nn.Linear(4, 3))
    linear.train()
    with pytest.raises(ConfigError, match="inference only"):
        linear(torch.randn(2, 4))
    with pytest.raises(ConfigError):
        SparseConv2d(nn.Conv2d(4, 4, 3, groups=2))
    with pytest.raises(ConfigError, match="crossover"):
        sparsify_for_inference(nn.Linear(2, 2), crossover=1.5)
