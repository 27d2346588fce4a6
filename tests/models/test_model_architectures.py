import pytest
import torch
from torch import nn

from prunekit.models import create_model, input_shape_for, list_models


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", list_models())
def test_every_model_forwards_a_batch(name):
    torch.manual_seed(0)
    kwargs = {"input_size": 32} if name == "mobilenet_v1" else {}
    model = create_model(name, num_classes=7, **kwargs)
    x = torch.randn(2, *input_shape_for(model))
    out = model(x)
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()
    model.eval()
    assert model(x).shape == (2, 7)


def test_mlpnet_has_exactly_the_checkpoint_layers():
    model = create_model("mlpnet")
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == {"fc1.weight": (40, 784), "fc2.weight": (20, 40), "fc3.weight": (10, 20)}
    assert n_params(model) == 784 * 40 + 40 * 20 + 20 * 10 == 32_360


def test_mnist_mlps_flatten_images_and_vectors():
    for name in ("mlpnet", "lenet_300_100"):
        model = create_model(name)
        images = torch.randn(3, 1, 28, 28)
        torch.testing.assert_close(model(images), model(images.flatten(1)))


@pytest.mark.parametrize(
    ("name", "count"),
    [("lenet_300_100", 266_610), ("lenet5_caffe", 431_080)],
)
def test_mnist_parameter_counts(name, count):
    assert n_params(create_model(name)) == count


@pytest.mark.parametrize(
    ("name", "kwargs", "low", "high"),
    [
        ("resnet20", {}, 0.26e6, 0.28e6),
        ("resnet56", {}, 0.84e6, 0.87e6),
        ("resnet32", {"width": 2}, 1.84e6, 1.88e6),
        ("vgg19", {}, 20.0e6, 20.1e6),
        ("mobilenet_v1", {"num_classes": 1000}, 4.2e6, 4.25e6),
    ],
)
def test_larger_parameter_counts(name, kwargs, low, high):
    with torch.device("meta"):
        model = create_model(name, **kwargs)
    assert low <= n_params(model) <= high


def test_wide_resnet32_stage_widths():
    with torch.device("meta"):
        model = create_model("resnet32", width=2)
    assert model.conv1.out_channels == 32
    assert model.layer2[0].conv1.out_channels == 64
    assert model.layer3[-1].conv2.out_channels == 128
    assert len(model.layer1) == 5
    assert model.fc.in_features == 128


def test_resnet_pad_shortcut_has_no_parameters_and_matches_shapes():
    conv = create_model("resnet20", shortcut="conv")
    pad = create_model("resnet20", shortcut="pad")
    shortcut_params = sum(
        p.numel() for name, p in conv.named_parameters() if ".downsample." in name
    )
    assert shortcut_params > 0
    assert not any(".downsample." in name for name, _ in pad.named_parameters())
    assert n_params(conv) - n_params(pad) == shortcut_params
    assert pad(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_resnet_pad_shortcut_subsamples_and_zero_pads():
    block = create_model("resnet20", shortcut="pad").layer2[0].downsample
    x = torch.randn(1, 16, 8, 8)
    y = block(x)
    assert y.shape == (1, 32, 4, 4)
    torch.testing.assert_close(y[:, 8:24], x[:, :, ::2, ::2])
    assert (y[:, :8] == 0).all() and (y[:, 24:] == 0).all()


def test_convs_use_kaiming_normal_fan_in():
    torch.manual_seed(0)
    model = create_model("vgg16")
    weight = model.features[-3].weight  # last conv: 512 x 512 x 3 x 3
    expected_std = (2.0 / (512 * 9)) ** 0.5
    assert weight.std().item() == pytest.approx(expected_std, rel=0.02)


def test_vgg_structure():
    model = create_model("vgg11", in_channels=1, num_classes=100)
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    norms = [m for m in model.features if isinstance(m, nn.BatchNorm2d)]
    assert len(convs) == len(norms) == 8
    assert convs[0].in_channels == 1
    assert isinstance(model.classifier, nn.Linear)
    assert (model.classifier.in_features, model.classifier.out_features) == (512, 100)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 100)
    assert sum(isinstance(m, nn.Conv2d) for m in create_model("vgg19").modules()) == 16


def test_mobilenet_forms_and_width():
    imagenet = create_model("mobilenet_v1", num_classes=5)
    assert imagenet.model[0][0].stride == (2, 2)
    assert imagenet(torch.randn(1, 3, 224, 224)).shape == (1, 5)
    cifar = create_model("mobilenet_v1", input_size=32, width_mult=0.5)
    assert cifar.model[0][0].stride == (1, 1)
    assert cifar.model[1][0].groups == 16  # depthwise
    assert cifar.fc.in_features == 512
    depthwise = [m for m in cifar.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert len(depthwise) == 13
