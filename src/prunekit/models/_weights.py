"""Weight initialisation shared by the convolutional models."""

from __future__ import annotations

from torch import nn


def init_convs_kaiming(model: nn.Module) -> None:
    """Kaiming-normal (fan-in, ReLU gain) for every conv weight, zero for conv biases.

    BatchNorm and Linear layers keep PyTorch's defaults (BN: weight 1, bias 0).
    Fan-in keeps the forward signal's variance, also for depthwise convs, whose
    fan-in is just the kernel size.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
