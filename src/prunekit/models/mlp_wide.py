"""A wide fully connected MNIST network, large enough that a global Fisher cannot be held.

``in_features → width → … → width → classes``: ``depth`` hidden Linear layers of
``width`` units with biases and ReLU, then ``fc`` (the classifier). Hidden layers are
``layers.0`` … ``layers.{depth-1}``. The default (width 4096, depth 5) has 70,381,578
parameters, 70,361,088 of them prunable weights (10 classes): the global empirical
Fisher with m = 1,000 gradients would take m·d·4 bytes ≈ 281 GB, so this is the model
the layer-wise methods (``prunekit.second_order.layerwise``) exist for.

Hidden layers use Kaiming-normal init (fan-in, ReLU gain) and zero biases, so the
signal keeps its scale through the depth; ``fc`` keeps PyTorch's default. The input is
flattened, so (N, 1, 28, 28) images and (N, 784) vectors both work.
"""

from __future__ import annotations

import torch
from torch import nn

from prunekit.models._checks import positive_int
from prunekit.models.registry import register_model


class WideMLP(nn.Module):
    """``depth`` hidden layers of ``width`` ReLU units; see the module docstring."""

    def __init__(
        self, num_classes: int = 10, width: int = 4096, depth: int = 5, in_features: int = 784
    ) -> None:
        super().__init__()
        self.default_input_shape = (1, 28, 28) if in_features == 784 else (in_features,)
        sizes = [in_features] + [width] * depth
        self.layers = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )
        self.fc = nn.Linear(sizes[-1], num_classes)
        self.relu = nn.ReLU()
        for layer in self.layers:
            nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for layer in self.layers:
            x = self.relu(layer(x))
        return self.fc(x)


@register_model("mlp_wide")
def mlp_wide(
    num_classes: int = 10, width: int = 4096, depth: int = 5, in_features: int = 784
) -> WideMLP:
    """Wide MLP (default 784-4096x5-10, about 70.4M weights): the layer-wise scale model."""
    return WideMLP(
        num_classes,
        positive_int("width", width),
        positive_int("depth", depth),
        positive_int("in_features", in_features),
    )
