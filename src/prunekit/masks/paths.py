"""Which weights of a masked network lie on an input-to-output path.

A kept weight on no path from an input to an output (its input unit receives nothing
from the inputs, or its output unit feeds nothing that reaches an output) cannot
change what the network computes from its inputs: it is a wasted kept weight.

The test runs the network as a *path counter*: every prunable weight set to its mask
(1 kept, 0 removed), every other weight and bias treated as absent, BatchNorm as the
identity, an all-ones input, in float64. With non-negative inputs and weights, ReLU
and max/average pooling pass the counts on unchanged in sign, so the output sum R is a
positive combination of the paths, and ∂R/∂W_ij = (paths into j)·(paths out of i):
positive exactly when W_ij, kept or not, would lie on some input-to-output path.
Biases are not inputs: a unit fed by its bias alone is not reached from the inputs.

Only networks built from the layers listed in ``PATH_LAYERS`` (and containers and
residual additions around them) are analysed; for others (LayerNorm, attention,
GELU...) the counts would not be path counts, and :func:`path_gradients` returns None.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn

PATH_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.ReLU,
    nn.ReLU6,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.Flatten,
    nn.Dropout,
    nn.Identity,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
)


def analysable(model: nn.Module) -> bool:
    """Whether every leaf module of ``model`` is one :func:`path_gradients` understands."""
    leaves = [m for m in model.modules() if not list(m.children())]
    return bool(leaves) and all(isinstance(m, PATH_LAYERS) for m in leaves)


def path_gradients(
    model: nn.Module, names: Sequence[str], kept: Sequence[Tensor], input_shape: Sequence[int]
) -> list[Tensor] | None:
    """For each named weight, ∂R/∂W of the path counter (see the module docstring)
    with ``kept`` (bool, True = kept, shaped like the weights) as the weights: positive
    where a weight, if kept, lies on an input-to-output path. ``input_shape`` is one
    sample's shape. None when the model is not :func:`analysable`."""
    if not analysable(model):
        return None
    counter = copy.deepcopy(model).to(device="cpu", dtype=torch.float64).eval()
    with torch.no_grad():
        for _name, param in counter.named_parameters():
            param.zero_()
        for module in counter.modules():
            if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
                if module.weight is not None:
                    module.weight.fill_(1.0)
                module.running_mean.zero_()
                module.running_var.fill_(1.0 - module.eps)
            if isinstance(module, nn.Dropout):
                module.p = 0.0
    weights = []
    for name, mask in zip(names, kept, strict=True):
        param = counter.get_parameter(name)
        with torch.no_grad():
            param.copy_(mask.to(torch.float64).reshape(param.shape))
        param.requires_grad_(True)
        weights.append(param)
    for param in counter.parameters():
        if all(param is not w for w in weights):
            param.requires_grad_(False)
    x = torch.ones(1, *input_shape, dtype=torch.float64)
    out = counter(x).sum()
    if not out.requires_grad:  # every path is cut: no weight is on one
        return [torch.zeros_like(w) for w in weights]
    grads = torch.autograd.grad(out, weights, allow_unused=True)
    grads = [
        torch.zeros_like(w) if g is None else g.detach()
        for w, g in zip(weights, grads, strict=True)
    ]
    if any(bool((g < 0).any() | ~torch.isfinite(g).all()) for g in grads):
        return None  # the forward is not a path counter (a subtraction, a normalisation...)
    return grads


def dead_kept_weights(
    model: nn.Module, names: Sequence[str], kept: Sequence[Tensor], input_shape: Sequence[int]
) -> list[Tensor] | None:
    """Bool tensors, True where a kept weight lies on no input-to-output path (None when
    the model is not analysable)."""
    grads = path_gradients(model, names, kept, input_shape)
    if grads is None:
        return None
    return [k.to(torch.bool) & ~(g.reshape(k.shape) > 0) for k, g in zip(kept, grads, strict=True)]
