"""Calibration inputs of the layers that layer-wise methods prune.

A pruned layer is a Linear or a Conv2d, cut into *blocks* that share one input
Hessian H = 2XXᵀ/N: a Linear is one block (its inputs are the rows of its input with
the leading dimensions flattened: ``(B, T, D)`` gives B·T rows of D); the projections of
an ``nn.MultiheadAttention`` read theirs from the attention's call (the packed q/k/v
input projection is three blocks; see :mod:`.attention_inputs`); a Conv2d of g
groups is g blocks, block j holding the weight rows of output channels
``[j·out/g, (j+1)·out/g)`` (``weight[o].reshape(-1)``, length c_in/g·k_h·k_w) and the
unfolded input patches of its input channels (``torch.nn.functional.unfold`` with the
conv's kernel, stride, padding and dilation; channel-major, the order of the weight's
flattened rows, so an N:M group runs along the same inputs as everywhere else).

Two ways to feed a layer's inputs to its accumulators, with bit-identical results:

- :class:`ForwardCache` (the default, where it applies): the model's forward is traced
  once (``torch.fx``, the pruned layers as leaves) and every calibration batch is carried
  through it *once* over the whole sequential pass. The values alive just before the
  call of the layer being calibrated are kept for every batch; after the layer is
  pruned, the forward resumes from there, through the pruned layer, up to the next
  one. Every node runs once per batch (L layer-forwards instead of about L²/2), at the
  cost of holding those values for all calibration samples (one activation of every
  sample in a chain; a skip branch adds its tensor).
- :func:`accumulate_inputs`: the forward is rerun from the input for every layer, batch
  by batch, and stops right after the last call of the layer it calibrates (a private
  exception raised in the hook); the activations of all samples are never held. Used
  when the model cannot be traced, a pruned layer is called more than once, a module
  carries hooks of its own, or the carried values would exceed the memory limit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules import module as _module_hooks

from prunekit.errors import ConfigError
from prunekit.methods.oneshot.attention_inputs import (
    OUT_PROJECTION,
    attention_parameter,
    block_shape,
    projection_inputs,
)
from prunekit.methods.oneshot.attention_inputs import rows_per_sample as attention_rows_per_sample


@dataclass
class PrunedLayer:
    """One pruned parameter ``name``, ``module``'s ``attribute``: ``groups`` blocks of
    ``rows`` weight rows over ``d_in`` inputs each, fed by the calls of ``module`` (a
    Linear or Conv2d and its ``weight``, or an ``nn.MultiheadAttention`` and one of its
    projections: ``in_proj_weight``, ``q/k/v_proj_weight``, ``out_proj.weight``)."""

    name: str
    module: nn.Module
    groups: int
    rows: int
    d_in: int
    attribute: str = "weight"

    @property
    def weight(self) -> nn.Parameter:
        return self.module.get_parameter(self.attribute)

    @property
    def size(self) -> int:
        return self.groups * self.rows * self.d_in

    @property
    def block_sizes(self) -> list[int]:
        return [self.rows * self.d_in] * self.groups

    @property
    def reads_within_call(self) -> bool:
        """Whether the inputs are computed inside the call from other parameters of the
        module (an attention's ``out_proj``: calibrated after its input projection)."""
        return self.attribute == OUT_PROJECTION

    def weight_blocks(self, weight: Tensor) -> Tensor:
        """``weight`` (or any tensor of its shape) as ``(groups, rows, d_in)``."""
        return weight.reshape(self.groups, self.rows, self.d_in)

    def input_blocks(self, x: Tensor) -> list[Tensor]:
        """The inputs of each block, ``(n, d_in)``, from a Linear's or Conv2d's input
        ``x``."""
        module = self.module
        if isinstance(module, nn.Linear):
            return [x.reshape(-1, self.d_in)]
        patches = _unfold(module, x)  # (B, c_in·kh·kw, L), channel-major
        rows = patches.transpose(1, 2).reshape(-1, patches.shape[1])
        return list(rows.split(self.d_in, dim=1))

    def call_blocks(self, args: tuple, kwargs: dict) -> list[Tensor]:
        """The inputs of each block, ``(n, d_in)``, in one call ``module(*args, **kwargs)``."""
        if isinstance(self.module, nn.MultiheadAttention):
            return projection_inputs(self.module, self.attribute, args, kwargs, self.name)
        return self.input_blocks(_first_input(args, kwargs).detach())

    def rows_per_sample(self, args: tuple, kwargs: dict) -> int:
        """Input rows (N) one sample of the call's input gives each block."""
        if isinstance(self.module, nn.MultiheadAttention):
            return attention_rows_per_sample(
                self.module, self.attribute, args, kwargs, self.name
            )
        x = _first_input(args, kwargs)
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
    """The :class:`PrunedLayer` of parameter ``name`` (a Linear's or Conv2d's weight, or
    a projection of an ``nn.MultiheadAttention``); ConfigError for any other parameter."""
    attention = attention_parameter(model, name)
    if attention is not None:
        module, attribute = attention
        return PrunedLayer(name, module, *block_shape(module, attribute), attribute=attribute)
    module_name, _, attribute = name.rpartition(".")
    module = model.get_submodule(module_name) if module_name else model
    if attribute != "weight" or not isinstance(module, nn.Linear | nn.Conv2d):
        raise ConfigError(
            f"layer-wise pruning handles the weights of Linear and Conv2d layers and the "
            f"projections of nn.MultiheadAttention; {name} is the {attribute!r} of a "
            f"{type(module).__name__}: leave it out of the names"
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
                rows[layer.name] = layer.rows_per_sample(args, kwargs)
            calls[layer.name] += 1

        return hook

    # hooks of one module run in registration order: an attention's out_proj comes after
    # its input projection, whose pruning changes out_proj's inputs
    for layer in sorted(layers, key=lambda x: x.reads_within_call):
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
        for accumulator, block in zip(accumulators, layer.call_blocks(args, kwargs), strict=True):
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


class _LeafTracer(fx.Tracer):
    """The default tracer, with the pruned modules as leaves whatever their class."""

    def __init__(self, leaves: set[int]) -> None:
        super().__init__()
        self._leaves = leaves

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return id(m) in self._leaves or super().is_leaf_module(m, qualname)


def _has_hooks(model: nn.Module) -> bool:
    global_hooks = (
        _module_hooks._global_forward_hooks,
        _module_hooks._global_forward_pre_hooks,
    )
    if any(global_hooks):
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def _tensor_bytes(value, seen: set[int]) -> int:
    if isinstance(value, Tensor):
        storage = value.untyped_storage()
        key = storage.data_ptr()
        if key in seen:
            return 0
        seen.add(key)
        return storage.nbytes()
    if isinstance(value, tuple | list):
        return sum(_tensor_bytes(v, seen) for v in value)
    if isinstance(value, dict):
        return sum(_tensor_bytes(v, seen) for v in value.values())
    return 0


class ForwardCache:
    """The calibration batches carried once through ``model``'s traced forward (see the
    module's docstring). Use :meth:`build` (None where it does not apply), then
    :meth:`accumulate` for the layers in forward order, each pruned in ``model`` before
    the next is asked for."""

    def __init__(
        self,
        model: nn.Module,
        graph: fx.Graph,
        positions: dict[str, int],
        batches: list[Tensor],
        max_bytes: int | None,
    ) -> None:
        self._interpreter = fx.Interpreter(model, garbage_collect_values=False, graph=graph)
        self._nodes = list(graph.nodes)
        self._positions = positions
        self._max_bytes = max_bytes
        index = {node: i for i, node in enumerate(self._nodes)}
        self._frees: list[list[fx.Node]] = [[] for _ in self._nodes]
        for node in self._nodes:
            last = max((index[user] for user in node.users), default=index[node])
            self._frees[last].append(node)
        placeholders = [n for n in self._nodes if n.op == "placeholder"]
        self._states: list[dict] | None = []
        for batch in batches:
            state = {placeholders[0]: batch}
            for node in placeholders[1:]:
                state[node] = node.args[0]
            self._states.append(state)
        self._position = len(placeholders)
        self._held = {t.untyped_storage().data_ptr() for t in batches}
        self._held |= {t.untyped_storage().data_ptr() for t in model.parameters()}
        self._held |= {t.untyped_storage().data_ptr() for t in model.buffers()}
        self.peak_bytes = 0

    @classmethod
    def build(
        cls,
        model: nn.Module,
        plan: ForwardPlan,
        batches: list[Tensor],
        max_bytes: int | None = None,
    ) -> ForwardCache | None:
        """A cache for ``plan``'s layers of ``model``, or None when the forward cannot
        be replayed exactly: not traceable by ``torch.fx``, a pruned layer called more
        than once or not as a module, a placeholder beyond the input without a default,
        or hooks on a module (they would not run inside traced-through modules)."""
        if any(plan.calls[layer.name] != 1 for layer in plan.layers) or _has_hooks(model):
            return None
        try:
            graph = _LeafTracer({id(layer.module) for layer in plan.layers}).trace(model)
        except Exception:  # noqa: BLE001 - any tracing failure means: recompute instead
            return None
        nodes = list(graph.nodes)
        placeholders = [n for n in nodes if n.op == "placeholder"]
        if (
            not placeholders
            or any(n.op != "placeholder" for n in nodes[: len(placeholders)])
            or any(str(n.target).startswith("*") for n in placeholders)
            or any(not n.args for n in placeholders[1:])
        ):
            return None
        names: dict[int, list[str]] = {}  # an attention module feeds several layers
        for layer in plan.layers:
            names.setdefault(id(layer.module), []).append(layer.name)
        positions: dict[str, int] = {}
        for i, node in enumerate(nodes):
            if node.op != "call_module":
                continue
            for name in names.get(id(model.get_submodule(node.target)), []):
                if name in positions:
                    return None
                positions[name] = i
        order = [positions.get(layer.name) for layer in plan.layers]
        if None in order or order != sorted(order):
            return None
        return cls(model, graph, positions, batches, max_bytes)

    def accumulate(self, layer: PrunedLayer, accumulators: Sequence) -> bool:
        """Carry every batch from where it stands to ``layer``'s call and feed the
        layer's inputs to ``accumulators``. False, with nothing fed and the cache
        dropped for good, when the values carried for all batches would exceed the byte
        limit (the caller then recomputes)."""
        if self._states is None:
            return False
        target = self._positions[layer.name]
        if target < self._position:
            raise RuntimeError(f"ForwardCache: {layer.name} asked for out of forward order")
        node = self._nodes[target]
        for b, state in enumerate(self._states):
            self._advance(state, target)
            if b == 0 and not self._fits(state):
                self._states = None
                return False
            self._interpreter.env = state
            try:
                args, kwargs = self._interpreter.fetch_args_kwargs_from_env(node)
            finally:
                self._interpreter.env = {}
            blocks = layer.call_blocks(args, kwargs)
            for accumulator, block in zip(accumulators, blocks, strict=True):
                accumulator.add_batch(block)
        self._position = target
        return True

    def release(self) -> None:
        """Drop the carried values (``peak_bytes`` stays)."""
        self._states = None

    def _advance(self, state: dict, target: int) -> None:
        interpreter = self._interpreter
        interpreter.env = state
        try:
            with torch.no_grad():
                for i in range(self._position, target):
                    node = self._nodes[i]
                    state[node] = interpreter.run_node(node)
                    for dead in self._frees[i]:
                        state.pop(dead, None)
        finally:
            interpreter.env = {}

    def _fits(self, state: dict) -> bool:
        """Whether the values carried for all batches (estimated from this batch's, the
        inputs and the model's own tensors left out, views of them too) stay within the
        limit."""
        carried = [v for node, v in state.items() if node.op not in ("placeholder", "get_attr")]
        per_batch = _tensor_bytes(carried, set(self._held))
        total = per_batch * len(self._states)
        if self._max_bytes is not None and total > self._max_bytes:
            return False
        self.peak_bytes = max(self.peak_bytes, total)
        return True


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
