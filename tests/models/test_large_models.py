"""The scale models of the layer-wise benchmarks: ResNet-50 and the wide MLP."""

import torch
from torch import nn

from prunekit.masks import prunable_parameters
from prunekit.models import classifier_name, create_model, input_shape_for, list_models


def n_weights(model: nn.Module) -> int:
    return sum(p.numel() for p in prunable_parameters(model).values())


def test_large_models_are_registered():
    assert {"resnet50", "mlp_wide"} <= set(list_models())


def test_resnet50_has_the_imagenet_shapes():
    with torch.device("meta"):
        model = create_model("resnet50", num_classes=1000)
    assert sum(p.numel() for p in model.parameters()) == 25_557_032
    assert n_weights(model) == 25_502_912
    assert len(prunable_parameters(model)) == 54  # 53 convs and fc
    assert [len(model.layer1), len(model.layer2), len(model.layer3), len(model.layer4)] == [
        3,
        4,
        6,
        3,
    ]
    assert tuple(model.layer1[0].conv1.weight.shape) == (64, 64, 1, 1)
    assert tuple(model.layer4[2].conv2.weight.shape) == (512, 512, 3, 3)
    assert tuple(model.layer4[2].conv3.weight.shape) == (2048, 512, 1, 1)
    assert model.layer2[0].conv2.stride == (2, 2)
    assert model.fc.in_features == 2048
    assert input_shape_for("resnet50") == (3, 224, 224)
    assert classifier_name(model) == "fc"


def test_resnet50_forwards_a_small_image():
    torch.manual_seed(0)
    model = create_model("resnet50", num_classes=5, width_mult=0.25).eval()
    out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 5)
    assert torch.isfinite(out).all()


def test_mlp_wide_default_is_too_large_for_a_global_fisher():
    with torch.device("meta"):
        model = create_model("mlp_wide")
    d = n_weights(model)
    assert d == 784 * 4096 + 4 * 4096 * 4096 + 4096 * 10 == 70_361_088
    assert 1_000 * d * 4 > 280e9  # m = 1,000 float32 gradients
    assert classifier_name(model) == "fc"


def test_mlp_wide_small_forwards_images_and_vectors():
    torch.manual_seed(0)
    model = create_model("mlp_wide", width=32, depth=3, num_classes=7)
    images = torch.randn(3, 1, 28, 28)
    torch.testing.assert_close(model(images), model(images.flatten(1)))
    assert model(images).shape == (3, 7)
    assert list(prunable_parameters(model)) == [
        "layers.0.weight",
        "layers.1.weight",
        "layers.2.weight",
        "fc.weight",
    ]
