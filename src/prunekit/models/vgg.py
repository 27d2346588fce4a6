"""VGG for CIFAR (Simonyan & Zisserman 2015), in the form GraSP and SynFlow use.

Each 3x3 convolution (padding 1, no bias) is followed by BatchNorm and ReLU; stages
are separated by 2x2 max pools; there is no pool after the last stage. A global
average pool turns the last 512-channel map (2x2 for 32x32 inputs) into 512
features and a single ``nn.Linear(512, num_classes)`` classifies them. Modules:
``features`` (an ``nn.Sequential`` of conv, bn, relu, pool) and ``classifier``.
Convs use Kaiming-normal init (fan-in); BN and Linear keep PyTorch's defaults.
"""

from __future__ import annotations

import torch
from torch import nn

from prunekit.models._checks import positive_int
from prunekit.models._weights import init_convs_kaiming
from prunekit.models.registry import register_model

# Output channels of each conv; "M" is a 2x2 max pool.
CONFIGS: dict[int, list[int | str]] = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
    19: [
        *[64, 64, "M", 128, 128, "M"],
        *[256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512],
    ],
}


class VGG(nn.Module):
    """CIFAR VGG with BatchNorm; ``depth`` is a key of ``CONFIGS``."""

    def __init__(self, depth: int, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.default_input_shape = (in_channels, 32, 32)
        layers: list[nn.Module] = []
        channels = in_channels
        for item in CONFIGS[depth]:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [
                    nn.Conv2d(channels, item, kernel_size=3, padding=1, bias=False),
                    nn.BatchNorm2d(item),
                    nn.ReLU(inplace=True),
                ]
                channels = item
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)
        init_convs_kaiming(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x))
        return self.classifier(x.flatten(1))


def _vgg(depth: int, num_classes: int, in_channels: int) -> VGG:
    return VGG(depth, num_classes, positive_int("in_channels", in_channels))


@register_model("vgg11")
def vgg11(num_classes: int = 10, in_channels: int = 3) -> VGG:
    """VGG11 with BatchNorm for 32x32 images."""
    return _vgg(11, num_classes, in_channels)


@register_model("vgg16")
def vgg16(num_classes: int = 10, in_channels: int = 3) -> VGG:
    """VGG16 with BatchNorm for 32x32 images."""
    return _vgg(16, num_classes, in_channels)


@register_model("vgg19")
def vgg19(num_classes: int = 10, in_channels: int = 3) -> VGG:
    """VGG19 with BatchNorm for 32x32 images (GraSP's and SynFlow's VGG19)."""
    return _vgg(19, num_classes, in_channels)
