"""LeNet-5-Caffe, the convolutional MNIST network of the SNIP paper.

conv(1→20, 5x5) → ReLU → maxpool 2 → conv(20→50, 5x5) → ReLU → maxpool 2 →
flatten (50·4·4 = 800) → fc(800→500) → ReLU → fc(500→classes); 431,080 parameters
for 10 classes. Caffe's original has no ReLU after the convolutions; this one does,
as most PyTorch reimplementations used in pruning papers. Input: (N, 1, 28, 28).
Weights keep PyTorch's default initialisation.
"""

from __future__ import annotations

import torch
from torch import nn

from prunekit.models.registry import register_model


class LeNet5Caffe(nn.Module):
    """LeNet-5-Caffe; see the module docstring for the layers."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.default_input_shape = (1, 28, 28)
        self.conv1 = nn.Conv2d(1, 20, kernel_size=5)
        self.conv2 = nn.Conv2d(20, 50, kernel_size=5)
        self.fc1 = nn.Linear(50 * 4 * 4, 500)
        self.fc2 = nn.Linear(500, num_classes)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu(self.conv1(x)))
        x = self.pool(self.relu(self.conv2(x)))
        x = self.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


@register_model("lenet5_caffe")
def lenet5_caffe(num_classes: int = 10) -> LeNet5Caffe:
    """LeNet-5-Caffe for 28x28 single-channel images."""
    return LeNet5Caffe(num_classes)
