"""ResNets for CIFAR (He et al. 2016, section 4.2): ResNet20, ResNet32, ResNet56.

A 3x3 conv stem (16·width channels, stride 1) with BN and ReLU, then three stages
of n basic blocks each (depth = 6n + 2) with 16·width, 32·width, 64·width channels;
the first block of stages 2 and 3 halves the resolution. A basic block is
conv3x3 → BN → ReLU → conv3x3 → BN, plus the shortcut, then ReLU. A global average
pool and ``fc = nn.Linear(64·width, num_classes)`` finish. ``width=2`` gives GraSP's
ResNet32 (32/64/128 channels).

Where a block changes shape, the shortcut is either ``"conv"``: a 1x1 strided conv
with BN (``downsample.0``/``downsample.1``, as in the WoodFisher/CBS ResNet20), or
``"pad"`` (the paper's option A): subsample and zero-pad the channels, no parameters.

Module names follow the WoodFisher checkpoint: ``conv1``, ``bn1``,
``layer{1,2,3}.{i}.{conv1,bn1,conv2,bn2,downsample.0,downsample.1}``, ``fc``.
Convs use Kaiming-normal init (fan-in); BN and Linear keep PyTorch's defaults.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from prunekit.models._checks import one_of, positive_int
from prunekit.models._weights import init_convs_kaiming
from prunekit.models.registry import register_model

SHORTCUTS = ("conv", "pad")


class PadShortcut(nn.Module):
    """Option-A shortcut: take every ``stride``-th pixel and zero-pad the new channels."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.extra = out_channels - in_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        before = self.extra // 2
        return F.pad(x, (0, 0, 0, 0, before, self.extra - before))


class BasicBlock(nn.Module):
    """Two 3x3 convs with BN and a residual connection."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, shortcut: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            if shortcut == "conv":
                self.downsample = nn.Sequential(
                    nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                    nn.BatchNorm2d(out_channels),
                )
            else:
                self.downsample = PadShortcut(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class CifarResNet(nn.Module):
    """CIFAR ResNet of depth 6n + 2; see the module docstring."""

    def __init__(
        self,
        depth: int,
        num_classes: int = 10,
        width: int = 1,
        shortcut: str = "conv",
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(f"a CIFAR ResNet has depth 6n + 2, got {depth}")
        blocks_per_stage = (depth - 2) // 6
        self.default_input_shape = (in_channels, 32, 32)
        widths = [16 * width, 32 * width, 64 * width]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        channels = widths[0]
        stages = []
        for index, stage_width in enumerate(widths):
            blocks = []
            for block_index in range(blocks_per_stage):
                stride = 2 if index > 0 and block_index == 0 else 1
                blocks.append(BasicBlock(channels, stage_width, stride, shortcut))
                channels = stage_width
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        init_convs_kaiming(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.avgpool(x).flatten(1))


def _resnet(
    depth: int, num_classes: int, width: int, shortcut: str, in_channels: int
) -> CifarResNet:
    positive_int("width", width)
    positive_int("in_channels", in_channels)
    one_of("shortcut", shortcut, SHORTCUTS)
    return CifarResNet(depth, num_classes, width, shortcut, in_channels)


@register_model("resnet20")
def resnet20(
    num_classes: int = 10, width: int = 1, shortcut: str = "conv", in_channels: int = 3
) -> CifarResNet:
    """ResNet20 (3 blocks per stage); about 0.27M parameters at width 1."""
    return _resnet(20, num_classes, width, shortcut, in_channels)


@register_model("resnet32")
def resnet32(
    num_classes: int = 10, width: int = 1, shortcut: str = "conv", in_channels: int = 3
) -> CifarResNet:
    """ResNet32 (5 blocks per stage); ``width=2`` is GraSP's ResNet32 (about 1.86M)."""
    return _resnet(32, num_classes, width, shortcut, in_channels)


@register_model("resnet56")
def resnet56(
    num_classes: int = 10, width: int = 1, shortcut: str = "conv", in_channels: int = 3
) -> CifarResNet:
    """ResNet56 (9 blocks per stage); about 0.86M parameters at width 1."""
    return _resnet(56, num_classes, width, shortcut, in_channels)
