"""Calibration inputs of the layers that layer-wise methods prune.

A pruned layer is a Linear or a Conv2d, cut into *blocks* that share one input
Hessian H = 2XXᵀ/N: a Linear is one block (its inputs are the rows of its input with
the leading dimensions flattened: ``(B, T, D)`` gives B·T rows of D); a Conv2d of g
groups is g blocks, block j holding the weight rows of output channels
``[j·out/g, (j+1)·out/g)`` (``weight[o].reshape(-1)``, length c_in/g·k_h·k_w) and the
unfolded input patches of its input channels (``torch.nn.functional.unfold`` with the
conv's kernel, stride, padding and dilation; channel-major, the order of the weight's
flattened rows, so an N:M group runs along the same inputs as everywhere else).

Hessians are accumulated in a stream by a forward pre-hook, batch by batch; the
activations of all samples are never held. A forward stops right after the last call
of the layer it calibrates (a private exception raised in the hook).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prunekit.errors import ConfigError


@dataclass
class PrunedLayer:
    """One pruned parameter (``name``) of a Linear or Conv2d ``module``: ``groups``
    blocks of ``rows`` weight rows over ``d_in`` inputs each."""

    name: str
    module: nn.Module
    groups: int
    rows: int
    d_in: int

    @property
    def size(self) -> int:
        return self.groups * self.rows * self.d_in

    @property
    def block_sizes(self) -> list[int]:
        return [self.rows * self.d_in] * self.groups

    def weight_blocks(self, weight: Tensor) -> Tensor:
        """``weight`` (or any tensor of its shape) as ``(groups, rows, d_in)``."""
        return weight.reshape(self.groups, self.rows, self.d_in)

    def input_blocks(self, x: Tensor) -> list[Tensor]:
        """The inputs of each block, ``(n, d_in)``, from the layer's input ``x``."""
        module = self.module
        if isinstance(module, nn.Linear):
            return [x.reshape(-1, self.d_in)]
        patches = _unfold(module, x)  # (B, c_in·kh·kw, L), channel-major
        rows = patches.transpose(1, 2).reshape(-1, patches.shape[1])
        return list(rows.split(self.d_in, dim=1))

    def rows_per_sample(self, x: Tensor) -> int:
        """Input rows (N) one sample of ``x`` gives each block."""
        if isinstance(self.module, nn.Linear):
            return max(1, x.numel() // (self.d_in * x.shape[0])) if x.dim() > 1 else 1
        return _unfold(self.module, x[:1]).shape[-1]


def _unfold(conv: nn.Conv2d, x: Tensor) -> Tensor:
    padding = conv.padding
    if isinstance(padding, str) or conv.padding_mode != "zeros":
        mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
        if padding != "valid":
            x = F.pad(x, conv._reversed_padding_repeated_twice, mode=mode)
        padding = 0
    if x.dim() == 3:  # an unbatched (C, H, W) input
        x = x.unsqueeze(0)
    return F.unfold(
        x, conv.kernel_size, dilation=conv.dilation, padding=padding, stride=conv.stride
    )


def pruned_layer(model: nn.Module, name: str) -> PrunedLayer:
    """The :class:`PrunedLayer` of parameter ``name`` (a Linear's or Conv2d's weight);
    ConfigError for any other parameter."""
    module_name, _, attribute = name.rpartition(".")
    module = model.get_submodule(module_name) if module_name else model
    if attribute != "weight" or not isinstance(module, nn.Linear | nn.Conv2d):
        raise ConfigError(
            f"layer-wise pruning handles the weights of Linear and Conv2d layers; {name} is "
            f"the {attribute!r} of a {type(module).__name__}: leave it out of the names"
        )
    if isinstance(module, nn.Linear):
        return PrunedLayer(name, module, 1, module.out_features, module.in_features)
    groups = module.groups
    kh, kw = module.kernel_size
    return PrunedLayer(
        name, module, groups, module.out_channels // groups, module.in_channels // groups * kh * kw
    )


class _StopForward(Exception):
    """Raised by a calibration hook once its layer has seen its input."""


def _first_input(args: tuple, kwargs: dict) -> Tensor:
    return args[0] if args else next(iter(kwargs.values()))


@dataclass
class ForwardPlan:
    """The pruned layers in forward order (order of their first call), how often each is
    called in one forward, and the input rows one sample gives each of its blocks."""

    layers: list[PrunedLayer]
    calls: dict[str, int]
    rows_per_sample: dict[str, int]


def forward_plan(model: nn.Module, layers: Sequence[PrunedLayer], batch: Tensor) -> ForwardPlan:
    """Run ``batch`` once through ``model`` with a hook on every layer and record their
    order; ConfigError naming the layers the forward never reaches."""
    order: list[str] = []
    calls = {layer.name: 0 for layer in layers}
    rows: dict[str, int] = {}
    handles = []

    def hook_for(layer: PrunedLayer):
        def hook(_module, args, kwargs):
            if calls[layer.name] == 0:
                order.append(layer.name)
                rows[layer.name] = layer.rows_per_sample(_first_input(args, kwargs))
            calls[layer.name] += 1

        return hook

    for layer in layers:
        handles.append(layer.module.register_forward_pre_hook(hook_for(layer), with_kwargs=True))
    try:
        with torch.no_grad():
            model(batch)
    finally:
        for handle in handles:
            handle.remove()
    unused = [layer.name for layer in layers if calls[layer.name] == 0]
    if unused:
        raise ConfigError(
            f"the forward pass never reaches {unused[:4]}: layer-wise pruning calibrates a "
            "layer on its inputs; leave these out of the names"
        )
    by_name = {layer.name: layer for layer in layers}
    return ForwardPlan([by_name[n] for n in order], calls, rows)


def accumulate_inputs(
    model: nn.Module,
    layer: PrunedLayer,
    batches: Iterable[Tensor],
    accumulators: Sequence,
    calls: int,
) -> None:
    """Feed each block's inputs of every batch to its accumulator (``add_batch``); the
    forward stops after the layer's ``calls``-th call."""
    seen = 0

    def hook(_module, args, kwargs):
        nonlocal seen
        x = _first_input(args, kwargs).detach()
        for accumulator, block in zip(accumulators, layer.input_blocks(x), strict=True):
            accumulator.add_batch(block)
        seen += 1
        if seen == calls:
            raise _StopForward

    handle = layer.module.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            for batch in batches:
                seen = 0
                try:
                    model(batch)
                except _StopForward:
                    pass
    finally:
        handle.remove()


def recalibrate_batchnorm(model: nn.Module, batches: Iterable[Tensor]) -> dict[str, Tensor]:
    """Re-estimate every BatchNorm's running statistics on ``batches`` (a cumulative
    average over them, the other modules in eval mode); returns the new buffers by
    name. The model's modes and momenta are restored."""
    norms = {
        n: m for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
    }
    if not norms:
        return {}
    modes = {n: m.training for n, m in model.named_modules()}
    momenta = {n: m.momentum for n, m in norms.items()}
    model.eval()
    for module in norms.values():
        module.reset_running_stats()
        module.momentum = None
        module.train()
    try:
        with torch.no_grad():
            for batch in batches:
                model(batch)
    finally:
        for name, module in model.named_modules():
            module.training = modes[name]
        for name, module in norms.items():
            module.momentum = momenta[name]
    prefix = {n: f"{n}." if n else "" for n in norms}
    return {
        prefix[n] + b: buffer.detach().clone()
        for n, module in norms.items()
        for b, buffer in module.named_buffers(recurse=False)
        if buffer is not None
    }


def peak_bytes(
    layer: PrunedLayer, rows_per_sample: int, batch_size: int, hessian_itemsize: int
) -> int:
    """Bytes one layer needs at its peak: the Hessians of all its blocks (accumulated
    in ``hessian_itemsize``), one block's H and its factor in float64 with its weights
    before and after, and one batch of its (unfolded) inputs in float32."""
    d_in, rows = layer.d_in, layer.rows
    hessians = layer.groups * d_in * d_in * hessian_itemsize
    solve = 8 * (2 * d_in * d_in + 2 * rows * d_in)
    activations = 4 * batch_size * rows_per_sample * d_in * layer.groups
    return hessians + solve + activations
