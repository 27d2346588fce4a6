"""MobileNetV1 (Howard et al. 2017): a 3x3 conv stem, then 13 depthwise-separable blocks.

Stem: conv3x3(3→32) → BN → ReLU. Each block: depthwise conv3x3 → BN → ReLU →
pointwise conv1x1 → BN → ReLU, with output channels 64, 128, 128, 256, 256, 512
(x6), 1024, 1024; blocks 2, 4, 6 and 12 have stride 2. A global average pool and
``fc = nn.Linear(1024, num_classes)`` finish. Every channel count is scaled by
``width_mult``.

``input_size=224`` (ImageNet) starts with a stride-2 stem (7x7 final map);
``input_size=32`` (CIFAR) uses a stride-1 stem (2x2 final map).

Modules are named as in the MobileNetV1 used by the WoodFisher/CBS ImageNet
experiments: ``model.0`` is the stem (``model.0.0`` conv, ``model.0.1`` BN),
``model.k`` the k-th block (``.0`` depthwise conv, ``.1`` BN, ``.3`` pointwise conv,
``.4`` BN), then ``fc``. Convs use Kaiming-normal init (fan-in); BN and Linear keep
PyTorch's defaults.
"""

from __future__ import annotations

import torch
from torch import nn

from prunekit.models._checks import one_of, positive_float, positive_int
from prunekit.models._weights import init_convs_kaiming
from prunekit.models.registry import register_model

STEM_CHANNELS = 32
# (output channels, stride) of each depthwise-separable block.
BLOCKS = [
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    *[(512, 1)] * 5,
    (1024, 2),
    (1024, 1),
]
INPUT_SIZES = (32, 224)


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def _depthwise_separable(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, 3, stride, padding=1, groups=in_channels, bias=False),
        nn.BatchNorm2d(in_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(in_channels, out_channels, 1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class MobileNetV1(nn.Module):
    """MobileNetV1; see the module docstring."""

    def __init__(
        self,
        num_classes: int = 10,
        input_size: int = 224,
        width_mult: float = 1.0,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.default_input_shape = (in_channels, input_size, input_size)

        def scaled(channels: int) -> int:
            return max(1, int(channels * width_mult))

        channels = scaled(STEM_CHANNELS)
        layers = [_conv_bn_relu(in_channels, channels, stride=1 if input_size == 32 else 2)]
        for out_channels, stride in BLOCKS:
            layers.append(_depthwise_separable(channels, scaled(out_channels), stride))
            channels = scaled(out_channels)
        self.model = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        init_convs_kaiming(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.avgpool(self.model(x)).flatten(1))


@register_model("mobilenet_v1")
def mobilenet_v1(
    num_classes: int = 10, input_size: int = 224, width_mult: float = 1.0, in_channels: int = 3
) -> MobileNetV1:
    """MobileNetV1 for 224x224 (ImageNet form) or 32x32 (CIFAR form) inputs."""
    one_of("input_size", input_size, INPUT_SIZES)
    positive_float("width_mult", width_mult)
    positive_int("in_channels", in_channels)
    return MobileNetV1(num_classes, input_size, width_mult, in_channels)
