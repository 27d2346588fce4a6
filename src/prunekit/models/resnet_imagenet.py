"""ResNet-50 for ImageNet-sized inputs (He et al. 2016), with bottleneck blocks.

Stem: conv7x7(in→64, stride 2) → BN → ReLU → maxpool 3x3 stride 2. Four stages of
[3, 4, 6, 3] bottleneck blocks with inner widths 64, 128, 256, 512 and outputs four
times that (256 … 2048); the first block of stages 2-4 halves the resolution on its
3x3 conv (the "v1.5" placement). A bottleneck is conv1x1 → BN → ReLU → conv3x3 → BN →
ReLU → conv1x1 → BN, plus the shortcut (a 1x1 strided conv with BN where the shape
changes), then ReLU. A global average pool and ``fc = nn.Linear(2048, num_classes)``
finish: 25,557,032 parameters for 1,000 classes, 25,502,912 of them prunable weights
(53 convs and ``fc``).

Module names are the usual ones (``conv1``, ``bn1``,
``layer{1..4}.{i}.{conv1,bn1,conv2,bn2,conv3,bn3,downsample.0,downsample.1}``, ``fc``).
``input_size`` only sets ``default_input_shape``: the global pool takes any size
from 32 up. Convs use Kaiming-normal init (fan-in); BN and Linear keep PyTorch's
defaults. ``width_mult`` scales every channel count (1.0 is ResNet-50).
"""

from __future__ import annotations

import torch
from torch import nn

from prunekit.models._checks import positive_float, positive_int
from prunekit.models._weights import init_convs_kaiming
from prunekit.models.registry import register_model

EXPANSION = 4
STAGE_WIDTHS = (64, 128, 256, 512)
RESNET50_BLOCKS = (3, 4, 6, 3)


class Bottleneck(nn.Module):
    """1x1 reduce → 3x3 (carries the stride) → 1x1 expand, with a residual connection."""

    def __init__(self, in_channels: int, width: int, stride: int) -> None:
        super().__init__()
        out_channels = width * EXPANSION
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ImageNetResNet(nn.Module):
    """Bottleneck ResNet with ``blocks`` per stage; see the module docstring."""

    def __init__(
        self,
        blocks: tuple[int, ...] = RESNET50_BLOCKS,
        num_classes: int = 1000,
        input_size: int = 224,
        in_channels: int = 3,
        width_mult: float = 1.0,
    ) -> None:
        super().__init__()
        self.default_input_shape = (in_channels, input_size, input_size)
        widths = [max(1, int(w * width_mult)) for w in STAGE_WIDTHS]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 7, 2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, padding=1)
        channels = widths[0]
        stages = []
        for index, (width, count) in enumerate(zip(widths, blocks, strict=True)):
            stage = []
            for block_index in range(count):
                stride = 2 if index > 0 and block_index == 0 else 1
                stage.append(Bottleneck(channels, width, stride))
                channels = width * EXPANSION
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        init_convs_kaiming(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


@register_model("resnet50")
def resnet50(
    num_classes: int = 10, input_size: int = 224, in_channels: int = 3, width_mult: float = 1.0
) -> ImageNetResNet:
    """ResNet-50 (bottlenecks [3, 4, 6, 3], 64…2048 channels) for 224x224 images."""
    positive_int("input_size", input_size)
    positive_int("in_channels", in_channels)
    positive_float("width_mult", width_mult)
    return ImageNetResNet(RESNET50_BLOCKS, num_classes, input_size, in_channels, width_mult)
