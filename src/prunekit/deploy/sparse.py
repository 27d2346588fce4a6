"""Sparse inference on the CPU: Linear and Conv2d layers computed with CSR kernels.

:func:`sparsify_for_inference` returns a copy of a model in which every Linear and
Conv2d layer whose weight *density* (fraction of non-zero weights) is below the
crossover density of its layer type is replaced by a module that multiplies with a
``torch.sparse_csr`` matrix of the non-zero weights:

- :class:`SparseLinear`: ``y = (W_csr @ xᵀ)ᵀ + b``;
- :class:`SparseConv2d`: ``F.unfold`` the input into columns (``in·kh·kw`` rows), then
  ``W_csr @ columns`` (groups = 1 and zero padding only; other convs stay dense).

The other layers stay dense. The copy is in eval mode and the sparse modules refuse to
run in training mode (no gradients flow to their weights). Outputs equal the dense
model's up to float rounding (the sums run in another order): for float32 the tests
hold ``|sparse − dense| ≤ 1e-4 · (1 + max|dense|)`` elementwise.

>>> fast = sparsify_for_inference(masked_model)  # doctest: +SKIP
>>> fast = sparsify_for_inference(masked_model, example_input=x)  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prunekit.deploy.timing import median_times
from prunekit.errors import ConfigError

# Densities below which the CSR kernel beat the dense one at batch 256 on 1 CPU thread
# (``prunekit bench``, benchmarks/results/deploy_cpu.md). Convolutions never won at
# batch 256, so they stay dense by default; at batch 1 they won below 0.1.
DEFAULT_CROSSOVER: dict[str, float] = {"Linear": 0.1, "Conv2d": 0.0}


class _CsrWeight(nn.Module):
    """Holds a 2-D weight as CSR buffers; the CSR tensor is built once and cached.

    The cache is dropped when the buffers are replaced (``.to()``) and on copy
    (CSR tensors cannot be deep-copied); the buffers themselves are what is copied.
    """

    def _set_weight(self, weight_2d: Tensor) -> None:
        with warnings.catch_warnings():  # torch warns that CSR support is "beta"
            warnings.simplefilter("ignore")
            csr = weight_2d.detach().to_sparse_csr()
        self.register_buffer("crow_indices", csr.crow_indices())
        self.register_buffer("col_indices", csr.col_indices())
        self.register_buffer("values", csr.values())
        self.matrix_shape = tuple(weight_2d.shape)

    def matrix(self) -> Tensor:
        values = self.values
        cached = self.__dict__.get("_cached_csr")
        if cached is None or cached[0] is not values:
            csr = torch.sparse_csr_tensor(
                self.crow_indices,
                self.col_indices,
                values,
                self.matrix_shape,
                check_invariants=False,  # built from to_sparse_csr's own output
            )
            cached = (values, csr)
            self.__dict__["_cached_csr"] = cached
        return cached[1]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_cached_csr", None)
        return state


def _refuse_training(module: nn.Module) -> None:
    raise ConfigError(
        f"{type(module).__name__} is for inference only: call model.eval() "
        "(train the dense masked model instead)"
    )


class SparseLinear(_CsrWeight):
    """``nn.Linear`` computed as ``(W_csr @ xᵀ)ᵀ + b``; inference only."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self._set_weight(linear.weight)
        bias = None if linear.bias is None else linear.bias.detach().clone()
        self.register_buffer("bias", bias)
        self.eval()

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            _refuse_training(self)
        rows = x.reshape(-1, self.in_features).t()
        bias = self.bias
        if bias is None:
            out = self.matrix() @ rows
        else:
            out = torch.addmm(bias.unsqueeze(1), self.matrix(), rows)
        return out.t().reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, nnz={self.values.numel()}"


class SparseConv2d(_CsrWeight):
    """``nn.Conv2d`` (groups 1, zero padding) as unfold + ``W_csr @ columns``; inference only."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if not supports_sparse_conv(conv):
            raise ConfigError("SparseConv2d needs groups=1, zero padding and numeric padding")
        self.out_channels = conv.out_channels
        self.kernel_size, self.stride = conv.kernel_size, conv.stride
        self.padding, self.dilation = conv.padding, conv.dilation
        self._set_weight(conv.weight.reshape(conv.out_channels, -1))
        bias = None if conv.bias is None else conv.bias.detach().clone()
        self.register_buffer("bias", bias)
        self.eval()

    def _out_size(self, size: int, i: int) -> int:
        span = self.dilation[i] * (self.kernel_size[i] - 1) + 1
        return (size + 2 * self.padding[i] - span) // self.stride[i] + 1

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            _refuse_training(self)
        n = x.shape[0]
        columns = F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)
        k, length = columns.shape[1], columns.shape[2]
        out = self.matrix() @ columns.transpose(0, 1).reshape(k, n * length)
        if self.bias is not None:
            out = out + self.bias[:, None]
        height, width = self._out_size(x.shape[2], 0), self._out_size(x.shape[3], 1)
        return out.reshape(self.out_channels, n, height, width).transpose(0, 1).contiguous()

    def extra_repr(self) -> str:
        return (
            f"{self.matrix_shape[1]} → {self.out_channels}, kernel={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, nnz={self.values.numel()}"
        )


def supports_sparse_conv(conv: nn.Conv2d) -> bool:
    """True for a Conv2d that :class:`SparseConv2d` can compute (groups 1, zero padding)."""
    return conv.groups == 1 and conv.padding_mode == "zeros" and not isinstance(conv.padding, str)


def density(weight: Tensor) -> float:
    """Fraction of non-zero entries of ``weight``."""
    return int(torch.count_nonzero(weight)) / max(weight.numel(), 1)


def _sparse_version(module: nn.Module) -> nn.Module | None:
    if isinstance(module, nn.Linear):
        return SparseLinear(module)
    if isinstance(module, nn.Conv2d) and supports_sparse_conv(module):
        return SparseConv2d(module)
    return None


def _layer_crossover(crossover: float | Mapping[str, float], module: nn.Module) -> float:
    if isinstance(crossover, Mapping):
        kind = "Linear" if isinstance(module, nn.Linear) else "Conv2d"
        return float(crossover.get(kind, 0.0))
    return float(crossover)


def _inputs_of(model: nn.Module, names: list[str], example_input: Tensor) -> dict[str, Tensor]:
    captured: dict[str, Tensor] = {}
    handles = [
        model.get_submodule(name).register_forward_pre_hook(
            lambda _m, args, name=name: captured.setdefault(name, args[0].detach())
        )
        for name in names
    ]
    try:
        with torch.no_grad():
            model(example_input)
    finally:
        for handle in handles:
            handle.remove()
    return captured


def sparsify_for_inference(
    model: nn.Module,
    crossover: float | Mapping[str, float] | None = None,
    example_input: Tensor | None = None,
    repeats: int = 5,
) -> nn.Module:
    """A copy of ``model`` in eval mode with sparse Linear/Conv2d layers where they pay.

    A layer is made sparse when its weight density is below ``crossover`` (a float for
    every layer, or a dict by layer type name ``{"Linear": ..., "Conv2d": ...}``;
    default :data:`DEFAULT_CROSSOVER`). With ``example_input``, each such layer is also
    timed dense and sparse on the input it receives (median of at least ``repeats``
    alternating calls, ``timing.median_times``) and stays dense unless the sparse
    version is faster, so the copy is not slower layer by layer at that batch size.
    Masks must already be applied: zeros are what is dropped.
    """
    if crossover is None:
        crossover = DEFAULT_CROSSOVER
    values = crossover.values() if isinstance(crossover, Mapping) else [crossover]
    if any(not 0.0 <= float(v) <= 1.0 for v in values):
        raise ConfigError(f"crossover densities must lie in [0, 1], got {crossover!r}")
    result = copy.deepcopy(model).eval()
    chosen: dict[str, nn.Module] = {}
    for name, module in result.named_modules():
        replacement = None
        if isinstance(module, nn.Linear | nn.Conv2d):
            if density(module.weight) < _layer_crossover(crossover, module):
                replacement = _sparse_version(module)
        if replacement is not None:
            chosen[name] = replacement
    if example_input is not None and chosen:
        inputs = _inputs_of(result, list(chosen), example_input)
        chosen = {
            name: sparse
            for name, sparse in chosen.items()
            if name in inputs
            and _sparse_is_faster(result.get_submodule(name), sparse, inputs[name], repeats)
        }
    for name, sparse in chosen.items():
        result.set_submodule(name, sparse)
    return result


@torch.no_grad()
def _sparse_is_faster(dense: nn.Module, sparse: nn.Module, x: Tensor, repeats: int) -> bool:
    dense_s, sparse_s = median_times([lambda: dense(x), lambda: sparse(x)], repeats, warmup=1)
    return sparse_s < dense_s


def sparse_layers(model: nn.Module) -> list[str]:
    """Names of the modules of ``model`` that compute with sparse kernels."""
    return [name for name, m in model.named_modules() if isinstance(m, SparseLinear | SparseConv2d)]
