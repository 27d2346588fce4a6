"""The layer objective, the result type, and the count / N:M checks every solver shares.

E(Ŵ) = Σ_rows (w − ŵ) H (w − ŵ)ᵀ / 2; with H = 2XXᵀ/N this is ‖(W − Ŵ)X‖²_F / N.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from prunekit.errors import ConfigError, DataError, NonFiniteError


@dataclass
class LayerPruneResult:
    """``weights`` (d_out × d_in, removed entries exactly 0, W's dtype), ``kept`` (bool,
    True = kept, exactly d_out·d_in − count True) and ``error`` = layer_error(W, weights,
    H) on the undamped H."""

    weights: Tensor
    kept: Tensor
    error: float


def layer_error(W: Tensor, W_hat: Tensor, H: Tensor) -> Tensor:
    """Σ_rows (w − ŵ) H (w − ŵ)ᵀ / 2 (float64 scalar): ‖(W − Ŵ)X‖²_F / N for H = 2XXᵀ/N."""
    delta = (W - W_hat).to(torch.float64)
    return ((delta @ H.to(torch.float64)) * delta).sum() / 2


def check_layer(W: Tensor, H: Tensor) -> None:
    if W.dim() != 2:
        raise DataError(f"W must be d_out × d_in, got shape {tuple(W.shape)}")
    d_in = W.shape[1]
    if H.dim() != 2 or H.shape != (d_in, d_in):
        raise DataError(f"H must be {d_in} × {d_in} for W of shape {tuple(W.shape)}")
    if not torch.isfinite(W).all():
        raise NonFiniteError("the layer's weights contain NaN or Inf")


def check_count(W: Tensor, count: int | None, pattern: tuple[int, int] | None) -> int:
    """The number of weights to remove: ``count`` checked against the layer's size, or
    implied by ``pattern`` = (n, m) (keep n of every m consecutive inputs of a row: m
    must divide d_in, and a given count must equal d_out · d_in/m · (m − n))."""
    d_out, d_in = W.shape
    if pattern is not None:
        n, m = pattern
        if not 0 <= n <= m or m < 1:
            raise ConfigError(f"N:M pattern needs 0 ≤ n ≤ m and m ≥ 1, got {n}:{m}")
        if d_in % m:
            raise ConfigError(f"N:M pattern {n}:{m}: m must divide d_in = {d_in}")
        implied = d_out * (d_in // m) * (m - n)
        if count is not None and count != implied:
            raise ConfigError(
                f"N:M pattern {n}:{m} removes {implied} weights of this layer, not {count}"
            )
        return implied
    if count is None:
        raise ConfigError("give the number of weights to remove (count) or an N:M pattern")
    if not 0 <= count <= d_out * d_in:
        raise ConfigError(f"cannot remove {count} of {d_out * d_in} weights")
    return int(count)


def lowest_k(scores: Tensor, k: int) -> Tensor:
    """Bool mask (True = selected) of exactly ``k`` lowest entries; ties go to the lower
    flat index (stable sort), so equal scores always give the same mask."""
    flat = scores.flatten()
    selected = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    selected[torch.sort(flat, stable=True).indices[:k]] = True
    return selected.reshape(scores.shape)


def lowest_in_groups(scores: Tensor, pattern: tuple[int, int]) -> Tensor:
    """Bool mask (True = removed) of the m − n lowest scores in each group of m
    consecutive columns of each row (ties to the lower index)."""
    n, m = pattern
    rows, width = scores.shape
    grouped = scores.reshape(rows, width // m, m)
    order = torch.sort(grouped, dim=-1, stable=True).indices[..., : m - n]
    removed = torch.zeros_like(grouped, dtype=torch.bool)
    removed.scatter_(-1, order, True)
    return removed.reshape(rows, width)


def split_count(count: int, sizes: list[int]) -> list[int]:
    """Split ``count`` over parts of the given sizes in proportion to their size; the
    remainder goes to the largest fractional parts (ties to the earlier part). Exact:
    the parts sum to ``count`` and none exceeds its size."""
    total = sum(sizes)
    if total == 0:
        return [0] * len(sizes)
    shares = [count * size / total for size in sizes]
    parts = [min(int(share), size) for share, size in zip(shares, sizes, strict=True)]
    order = sorted(range(len(sizes)), key=lambda i: (-(shares[i] - parts[i]), i))
    remainder = count - sum(parts)
    for i in order:
        if remainder == 0:
            break
        if parts[i] < sizes[i]:
            parts[i] += 1
            remainder -= 1
    assert sum(parts) == count
    return parts


def make_result(
    W: Tensor, weights: Tensor, kept: Tensor, H: Tensor, count: int
) -> LayerPruneResult:
    """Zero the removed weights exactly, check the count and finiteness, measure the error."""
    removed = int((~kept).sum())
    assert removed == count, f"solver removed {removed} weights, expected {count}"
    weights = torch.where(kept, weights.to(W.dtype), torch.zeros((), dtype=W.dtype))
    if not torch.isfinite(weights).all():
        raise NonFiniteError("layer-wise pruning produced NaN or Inf weights")
    return LayerPruneResult(weights, kept, float(layer_error(W, weights, H)))
