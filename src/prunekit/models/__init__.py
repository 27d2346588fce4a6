"""Model definitions and the ``create_model(name, num_classes=..., **kw)`` registry.

Every model built here carries ``default_input_shape``: the shape of one input
without the batch dimension, e.g. ``(1, 28, 28)`` or ``(3, 32, 32)``.

>>> model = create_model("resnet20", num_classes=10)
>>> classifier_name(model)
'fc'
>>> input_shape_for("vgg19")
(3, 32, 32)
"""

from __future__ import annotations

import torch
from torch import nn

from prunekit.errors import ConfigError
from prunekit.models import (  # noqa: F401  (registers)
    lenet5,
    mlp,
    mlp_wide,
    mobilenet,
    resnet_cifar,
    resnet_imagenet,
    vgg,
    vit,
)
from prunekit.models.registry import create_model, list_models, register_model

__all__ = [
    "classifier_name",
    "create_model",
    "input_shape_for",
    "list_models",
    "register_model",
]


def classifier_name(model: nn.Module) -> str:
    """Qualified name of the last ``nn.Linear`` in ``model.named_modules()`` order.

    For every model in this package that is the output layer (``"fc"``, ``"fc3"``,
    ``"classifier"``...). ``ConfigError`` if the model has no Linear layer.
    """
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name
    if last is None:
        raise ConfigError(f"{type(model).__name__} has no nn.Linear layer to call its classifier")
    return last


def input_shape_for(model: str | nn.Module, **kwargs: object) -> tuple[int, ...]:
    """Shape of one input (no batch dimension) for a model or a registered name.

    With a name, ``kwargs`` are the factory's options (``input_size``, ``in_channels``...);
    the model is built on the meta device, so no memory is spent on weights.
    """
    if isinstance(model, str):
        with torch.device("meta"):
            model = create_model(model, **kwargs)
    shape = getattr(model, "default_input_shape", None)
    if shape is None:
        raise ConfigError(f"{type(model).__name__} has no default_input_shape attribute")
    return tuple(shape)
