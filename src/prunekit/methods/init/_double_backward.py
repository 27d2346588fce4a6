"""Cheaper double backward for convolutions and training-mode batch norm.

GraSP differentiates a gradient (``H g`` as the gradient of ``g · ∇L``). PyTorch's
own second derivatives of these two layers are correct but slow on CPU: the
convolution's computes a weight gradient as a forward convolution with the batch as
channels, and batch norm's is a long chain of elementwise operations. Inside
:class:`CheapDoubleBackward`, ``conv{1,2,3}d`` and ``batch_norm`` in training mode
go through autograd Functions whose backward is itself made of operations with
cheap backwards:

- a convolution's input gradient is bilinear in (output gradient, weight) and its
  weight gradient bilinear in (input, output gradient); both derivatives of each
  are one convolution or one ``convolution_backward``;
- batch norm's backward has a hand-derived backward (formulas below).

Forward values and first derivatives are PyTorch's own kernels; tests compare the
second derivatives with PyTorch's and with full Hessians.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.overrides import TorchFunctionMode

aten = torch.ops.aten

_CONVS = {torch.conv1d, torch.conv2d, torch.conv3d}
_CONV_ARGS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_CONV_DEFAULTS = (None, None, None, 1, 0, 1, 1)
_BN_ARGS = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")
_BN_DEFAULTS = (None, None, None, None, None, False, 0.1, 1e-5)

Conv = tuple[list[int], list[int], list[int], int]  # stride, padding, dilation, groups


def _conv(x: Tensor, w: Tensor, conf: Conv) -> Tensor:
    stride, padding, dilation, groups = conf
    return torch.convolution(
        x, w, None, stride, padding, dilation, False, [0] * len(stride), groups
    )


def _conv_backward(gy: Tensor, x: Tensor, w: Tensor, conf: Conv, want_input: bool) -> Tensor:
    """Input gradient (``want_input``) or weight gradient of ``conv(x, w)`` for ``gy``."""
    stride, padding, dilation, groups = conf
    mask = [want_input, not want_input, False]
    out = aten.convolution_backward(
        gy, x, w, None, stride, padding, dilation, False, [0] * len(stride), groups, mask
    )
    return out[0] if want_input else out[1]


class _ConvInputGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, gy: Tensor, w: Tensor, x: Tensor, conf: Conv) -> Tensor:
        ctx.save_for_backward(gy, w, x)
        ctx.conf = conf
        return _conv_backward(gy, x, w, conf, want_input=True)

    @staticmethod
    def backward(ctx: Any, ggx: Tensor) -> tuple:
        gy, w, x = ctx.saved_tensors
        d_gy = _conv(ggx, w, ctx.conf) if ctx.needs_input_grad[0] else None
        d_w = _conv_backward(gy, ggx, w, ctx.conf, False) if ctx.needs_input_grad[1] else None
        return d_gy, d_w, None, None


class _ConvWeightGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, gy: Tensor, w: Tensor, conf: Conv) -> Tensor:
        ctx.save_for_backward(x, gy, w)
        ctx.conf = conf
        return _conv_backward(gy, x, w, conf, want_input=False)

    @staticmethod
    def backward(ctx: Any, ggw: Tensor) -> tuple:
        x, gy, _ = ctx.saved_tensors
        d_x = _conv_backward(gy, x, ggw, ctx.conf, True) if ctx.needs_input_grad[0] else None
        d_gy = _conv(x, ggw, ctx.conf) if ctx.needs_input_grad[1] else None
        return d_x, d_gy, None, None


class _Conv(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, w: Tensor, b: Tensor | None, conf: Conv) -> Tensor:
        ctx.save_for_backward(x, w)
        ctx.conf = conf
        ctx.has_bias = b is not None
        stride, padding, dilation, groups = conf
        zeros = [0] * len(stride)
        return torch.convolution(x, w, b, stride, padding, dilation, False, zeros, groups)

    @staticmethod
    def backward(ctx: Any, gy: Tensor) -> tuple:
        x, w = ctx.saved_tensors
        need_x, need_w, need_b, _ = ctx.needs_input_grad
        gx = _ConvInputGrad.apply(gy, w, x, ctx.conf) if need_x else None
        gw = _ConvWeightGrad.apply(x, gy, w, ctx.conf) if need_w else None
        gb = gy.sum([0, *range(2, gy.dim())]) if ctx.has_bias and need_b else None
        return gx, gw, gb, None


def _channel(v: Tensor, like: Tensor) -> Tensor:
    """A per-channel vector shaped to broadcast against an (N, C, ...) tensor."""
    return v.reshape(1, -1, *([1] * (like.dim() - 2)))


def _channel_sums(grad: Tensor, x: Tensor, mean: Tensor, invstd: Tensor) -> tuple[Tensor, Tensor]:
    """``(Σ grad·(x − mean)·invstd, Σ grad)`` per channel, in one fused pass."""
    _, weighted, plain = aten.native_batch_norm_backward(
        grad, x, None, None, None, mean, invstd, True, 0.0, [False, True, True]
    )
    return weighted, plain


class _BatchNormBackward(torch.autograd.Function):
    """``(gx, gγ, gβ)`` of training-mode batch norm, with an explicit backward.

    Per channel, with M elements and means over them: x̂ = (x − μ)·s,
    s = (σ² + eps)^(−1/2), ḡ = mean(gy), c = mean(gy·x̂), u = gy − ḡ − x̂·c and
    P(v) = v − mean(v) − x̂·mean(v·x̂). Then gx = γ·s·u, gγ = M·c, gβ = M·ḡ, and
    for incoming (ggx, ggγ, ggβ), with m = mean(ggx), B = mean(ggx·x̂),
    A = mean(ggx·u):
        d_gy = γ·s·P(ggx) + ggγ·x̂ + ggβ
        d_x  = −γ·s²·[c·P(ggx) + x̂·A + u·B] + ggγ·s·u
        d_γ  = M·s·A
    (δx̂ = s·P(δx) and δs = −s²·mean(x̂·δx) hold exactly, eps included.) Each output
    is written as a per-channel combination of ggx, gy and x: a few fused passes.
    """

    @staticmethod
    def forward(
        ctx: Any,
        gy: Tensor,
        x: Tensor,
        weight: Tensor | None,
        mean: Tensor,
        invstd: Tensor,
        eps: float,
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        gx, gw, gb = aten.native_batch_norm_backward(
            gy, x, weight, None, None, mean, invstd, True, eps, [True, True, True]
        )
        ctx.save_for_backward(gy, x, weight, mean, invstd, gw, gb)
        if weight is None:
            return gx, None, None
        return gx, gw, gb

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, ggx: Tensor | None, ggw: Tensor | None, ggb: Tensor | None) -> tuple:
        gy, x, weight, mean, invstd, sum_gy_xhat, sum_gy = ctx.saved_tensors
        count = x.numel() // x.shape[1]
        s, mu = _channel(invstd, x), _channel(mean, x)
        gamma = _channel(weight, x) if weight is not None else torch.ones_like(s)
        c, g_mean = _channel(sum_gy_xhat, x) / count, _channel(sum_gy, x) / count
        zero = torch.zeros_like(s)
        ggw = _channel(ggw, x) if ggw is not None else zero
        ggb = _channel(ggb, x) if ggb is not None else zero
        if ggx is not None:
            sum_ggx_xhat, sum_ggx = _channel_sums(ggx, x, mean, invstd)
            sum_ggx_gy, _ = _channel_sums(ggx, gy, torch.zeros_like(mean), torch.ones_like(invstd))
            m, b = _channel(sum_ggx, x) / count, _channel(sum_ggx_xhat, x) / count
            a = _channel(sum_ggx_gy, x) / count - g_mean * m - c * b
        else:
            m = b = a = zero
        centered = x - mu  # x̂ = centered·s; centring first keeps float32 precision
        # d_gy = k_ggx·ggx + k_xhat·x̂ + k_1
        k_xhat = -gamma * s * b + ggw
        d_gy = (centered * (k_xhat * s)).add_(ggb - gamma * s * m)
        # d_x = q_ggx·ggx + q_gy·gy + q_xhat·x̂ + q_1
        q_gy = -gamma * s * s * b + ggw * s
        q_xhat = -gamma * s * s * (a - 2 * b * c) - ggw * s * c
        q_1 = gamma * s * s * (c * m + b * g_mean) - ggw * s * g_mean
        d_x = (centered * (q_xhat * s)).add_(q_1).addcmul_(gy, q_gy)
        del centered
        if ggx is not None:
            d_gy.addcmul_(ggx, gamma * s)
            d_x.addcmul_(ggx, -gamma * s * s * c)
        d_w = None
        if weight is not None and ctx.needs_input_grad[2]:
            d_w = (s * a).reshape(-1) * count
        return d_gy, d_x, d_w, None, None, None


class _BatchNorm(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        weight: Tensor | None,
        bias: Tensor | None,
        running_mean: Tensor | None,
        running_var: Tensor | None,
        momentum: float,
        eps: float,
    ) -> Tensor:
        out, mean, invstd = aten.native_batch_norm(
            x, weight, bias, running_mean, running_var, True, momentum, eps
        )
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.eps = eps
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    def backward(ctx: Any, gy: Tensor) -> tuple:
        x, weight, mean, invstd = ctx.saved_tensors
        gx, gw, gb = _BatchNormBackward.apply(gy, x, weight, mean, invstd, ctx.eps)
        return gx, gw, gb if ctx.has_bias else None, None, None, None, None


def _bound(names: tuple, defaults: tuple, args: tuple, kwargs: dict) -> dict:
    values = dict(zip(names, defaults, strict=True))
    values.update(zip(names, args, strict=False))
    values.update(kwargs)
    return values


def _tuple(value: Any, n: int) -> list[int]:
    return list(value) if isinstance(value, tuple | list) else [int(value)] * n


class CheapDoubleBackward(TorchFunctionMode):
    """Within this mode, convolutions (``padding`` given as numbers) and training-mode
    batch norm use the Functions above; everything else runs as usual."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        if func in _CONVS:
            a = _bound(_CONV_ARGS, _CONV_DEFAULTS, args, kwargs)
            if not isinstance(a["padding"], str):
                n = a["input"].dim() - 2
                conf = (
                    _tuple(a["stride"], n),
                    _tuple(a["padding"], n),
                    _tuple(a["dilation"], n),
                    int(a["groups"]),
                )
                return _Conv.apply(a["input"], a["weight"], a["bias"], conf)
        elif func is F.batch_norm:
            a = _bound(_BN_ARGS, _BN_DEFAULTS, args, kwargs)
            if a["training"]:
                return _BatchNorm.apply(
                    a["input"],
                    a["weight"],
                    a["bias"],
                    a["running_mean"],
                    a["running_var"],
                    a["momentum"],
                    a["eps"],
                )
        return func(*args, **kwargs)
