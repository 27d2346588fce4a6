import pytest
import torch
from torch import nn

from prunekit.errors import ConfigError
from prunekit.models import (
    classifier_name,
    create_model,
    input_shape_for,
    list_models,
    register_model,
    registry,
)

EXPECTED = {
    "mlpnet",
    "lenet_300_100",
    "lenet5_caffe",
    "vgg11",
    "vgg16",
    "vgg19",
    "resnet20",
    "resnet32",
    "resnet56",
    "mobilenet_v1",
}


def test_list_models_is_sorted_and_complete():
    names = list_models()
    assert names == sorted(names)
    assert EXPECTED <= set(names)


def test_unknown_name_lists_valid_names_and_suggests_closest():
    with pytest.raises(ConfigError) as info:
        create_model("resnet-20")
    message = str(info.value)
    assert "resnet-20" in message
    assert "Did you mean 'resnet20'?" in message
    for name in EXPECTED:
        assert name in message


def test_unknown_name_suggestion_ignores_case():
    with pytest.raises(ConfigError, match="Did you mean 'mlpnet'"):
        create_model("MLPNet")


def test_unknown_option_is_a_config_error_naming_the_options():
    with pytest.raises(ConfigError) as info:
        create_model("resnet20", widht=2)
    message = str(info.value)
    assert "widht" in message and "width" in message and "shortcut" in message


@pytest.mark.parametrize(
    ("name", "kwargs", "option"),
    [
        ("resnet20", {"shortcut": "identity"}, "shortcut"),
        ("resnet20", {"width": 0}, "width"),
        ("vgg16", {"in_channels": -1}, "in_channels"),
        ("mobilenet_v1", {"input_size": 64}, "input_size"),
        ("mobilenet_v1", {"width_mult": 0.0}, "width_mult"),
        ("mlpnet", {"num_classes": 0}, "num_classes"),
    ],
)
def test_invalid_values_are_config_errors(name, kwargs, option):
    with pytest.raises(ConfigError, match=option):
        create_model(name, **kwargs)


def test_register_model_returns_the_function_and_refuses_duplicates(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @register_model("tiny_test_model")
    def tiny(num_classes: int = 10) -> nn.Module:
        return nn.Linear(4, num_classes)

    assert callable(tiny)
    assert create_model("tiny_test_model", num_classes=3).out_features == 3
    with pytest.raises(ValueError, match="already registered"):
        register_model("tiny_test_model")(lambda num_classes=10: nn.Linear(1, 1))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("mlpnet", "fc3"),
        ("lenet_300_100", "fc3"),
        ("lenet5_caffe", "fc2"),
        ("vgg19", "classifier"),
        ("resnet20", "fc"),
        ("mobilenet_v1", "fc"),
    ],
)
def test_classifier_name_is_the_output_layer(name, expected):
    with torch.device("meta"):
        model = create_model(name, num_classes=7)
    assert classifier_name(model) == expected
    assert model.get_submodule(expected).out_features == 7


def test_classifier_name_without_linear_is_a_config_error():
    with pytest.raises(ConfigError):
        classifier_name(nn.Sequential(nn.Conv2d(1, 1, 1)))


def test_input_shape_for_names_models_and_options():
    assert input_shape_for("mlpnet") == (1, 28, 28)
    assert input_shape_for("lenet5_caffe") == (1, 28, 28)
    assert input_shape_for("resnet56") == (3, 32, 32)
    assert input_shape_for("vgg11", in_channels=1) == (1, 32, 32)
    assert input_shape_for("mobilenet_v1") == (3, 224, 224)
    assert input_shape_for("mobilenet_v1", input_size=32) == (3, 32, 32)
    assert input_shape_for(create_model("resnet20")) == (3, 32, 32)
    with pytest.raises(ConfigError):
        input_shape_for(nn.Linear(2, 2))
