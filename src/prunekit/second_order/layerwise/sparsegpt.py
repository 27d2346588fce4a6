"""SparseGPT: one left-to-right sweep with the upper Cholesky factor U of H⁻¹.

For column j (columns < j already final): err = (w_j − ŵ_j)/U_jj per row and
W_{:,j:} −= err · U_{j,j:}, the OBS update of w_j's removal on the subproblem of columns
≥ j. Columns go in lazy blocks of ``block_size``: inside a block the update is applied
column by column; later columns receive the block's accumulated errors once, as
W_{:,i2:} −= Err · U_{i1:i2,i2:}. The mask of the next ``mask_block`` columns is chosen
when the sweep reaches them, on their current (fully updated) values, by w²/U_jj².
"""

from __future__ import annotations

import torch
from torch import Tensor

from prunekit.errors import ConfigError
from prunekit.second_order.layerwise.hessian import prepare_hessian, upper_cholesky_of_inverse
from prunekit.second_order.layerwise.objective import (
    LayerPruneResult,
    check_count,
    check_layer,
    lowest_in_groups,
    lowest_k,
    make_result,
    split_count,
)


def compute_dtype(W: Tensor) -> torch.dtype:
    """float64 for float64 weights, float32 otherwise (factorisations are float64)."""
    return torch.float64 if W.dtype == torch.float64 else torch.float32


def sparsegpt_layer(
    W: Tensor,
    H: Tensor,
    count: int | None,
    *,
    damp: float = 0.01,
    block_size: int = 128,
    mask_block: int | None = None,
    lazy: bool = True,
    pattern: tuple[int, int] | None = None,
    kept: Tensor | None = None,
) -> LayerPruneResult:
    """Prune ``count`` weights of W (d_out × d_in) against H = 2XXᵀ/N (SparseGPT).

    Counts: the columns are cut into mask blocks of ``mask_block`` (None = block_size)
    columns; block b removes k_b of its d_out·width_b weights, k_b = count in proportion
    to the block's size, remainder to the largest fractional parts (earlier block on a
    tie), so Σ k_b = count exactly; the k_b lowest w²/U_jj² over all rows of the block go
    (ties to the lower index). With ``pattern`` = (n, m) each row drops the m − n lowest of
    each group of m columns instead. ``lazy=False`` applies every column's update to all
    later columns at once (same result up to rounding). ``kept`` (bool, True = kept)
    fixes the mask instead of choosing it. Dead inputs (H_ii = 0) have their weights
    zeroed first, so they score 0 and go first."""
    check_layer(W, H)
    count = check_count(W, count, pattern)
    d_out, d_in = W.shape
    if block_size < 1 or (mask_block is not None and mask_block < 1):
        raise ConfigError("block_size and mask_block must be positive")
    if kept is not None:
        if kept.shape != W.shape or int((~kept).sum()) != count:
            raise ConfigError(f"a fixed mask must have W's shape and remove {count} weights")
        removed = ~kept.to(torch.bool)
    else:
        removed = torch.zeros(d_out, d_in, dtype=torch.bool, device=W.device)
    H_damped, dead = prepare_hessian(H, damp)
    dtype = compute_dtype(W)
    U = upper_cholesky_of_inverse(H_damped).to(dtype=dtype, device=W.device)
    scale = torch.diagonal(U) ** 2
    weights = W.to(dtype).clone()
    weights[:, dead.to(W.device)] = 0.0

    mask_width = pattern[1] if pattern else (mask_block or block_size)
    starts = list(range(0, d_in, mask_width))
    widths = [min(mask_width, d_in - s) for s in starts]
    block_counts = dict(zip(starts, split_count(count, [d_out * w for w in widths]), strict=True))
    lazy_width = block_size if lazy else 1

    for i1 in range(0, d_in, lazy_width):
        i2 = min(i1 + lazy_width, d_in)
        block = weights[:, i1:i2].clone()
        errors = torch.zeros(d_out, i2 - i1, dtype=dtype, device=W.device)
        for j in range(i1, i2):
            if kept is None and j in block_counts:
                end = min(j + mask_width, d_in)
                values = block[:, j - i1 : min(end, i2) - i1]
                if end > i2:  # the mask block reaches past the lazy block: bring it up to date
                    later = weights[:, i2:end] - errors[:, : j - i1] @ U[i1:j, i2:end]
                    values = torch.cat([values, later], dim=1)
                scores = values**2 / scale[j:end]
                if pattern:
                    removed[:, j:end] = lowest_in_groups(scores, pattern)
                else:
                    removed[:, j:end] = lowest_k(scores, block_counts[j])
            column = block[:, j - i1]
            error = torch.where(removed[:, j], column, torch.zeros((), dtype=dtype)) / U[j, j]
            block[:, j - i1 :] -= error[:, None] * U[j, j:i2][None, :]
            errors[:, j - i1] = error
        weights[:, i1:i2] = block
        weights[:, i2:] -= errors @ U[i1:i2, i2:]
    return make_result(W, weights, ~removed, H, count)
