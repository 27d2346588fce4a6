"""Fully connected MNIST networks: MLPNet (784-40-20-10) and LeNet-300-100.

Both flatten their input, so (N, 1, 28, 28) images and (N, 784) vectors both work.
Weights keep PyTorch's default ``nn.Linear`` initialisation.
"""

from __future__ import annotations

import torch
from torch import nn

from prunekit.models._checks import positive_int
from prunekit.models.registry import register_model


class MLPNet(nn.Module):
    """784 → 40 → 20 → classes, ReLU between layers, no biases.

    The model of the WoodFisher and CBS MNIST experiments. Layers are named ``fc1``,
    ``fc2``, ``fc3`` so that that checkpoint's ``module.fcN._layer.weight`` maps onto
    ``fcN.weight``.
    """

    def __init__(self, num_classes: int = 10, in_features: int = 784) -> None:
        super().__init__()
        self.default_input_shape = (1, 28, 28) if in_features == 784 else (in_features,)
        self.fc1 = nn.Linear(in_features, 40, bias=False)
        self.fc2 = nn.Linear(40, 20, bias=False)
        self.fc3 = nn.Linear(20, num_classes, bias=False)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        x = self.relu(self.fc1(x))
        x = self.relu(self.fc2(x))
        return self.fc3(x)


class LeNet300100(nn.Module):
    """784 → 300 → 100 → classes with biases, ReLU between layers (LeCun et al. 1998)."""

    def __init__(self, num_classes: int = 10, in_features: int = 784) -> None:
        super().__init__()
        self.default_input_shape = (1, 28, 28) if in_features == 784 else (in_features,)
        self.fc1 = nn.Linear(in_features, 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, num_classes)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        x = self.relu(self.fc1(x))
        x = self.relu(self.fc2(x))
        return self.fc3(x)


@register_model("mlpnet")
def mlpnet(num_classes: int = 10, in_features: int = 784) -> MLPNet:
    """MLPNet 784-40-20-10 without biases (32,360 weights for 10 classes)."""
    return MLPNet(num_classes, positive_int("in_features", in_features))


@register_model("lenet_300_100")
def lenet_300_100(num_classes: int = 10, in_features: int = 784) -> LeNet300100:
    """LeNet-300-100 with biases (266,610 parameters for 10 classes)."""
    return LeNet300100(num_classes, positive_int("in_features", in_features))
