"""Exact least squares on a fixed support, rows batched.

For each row with kept set S: ŵ_S = w H_{:,S} (H_SS)⁻¹ and ŵ elsewhere 0, the minimiser of
(w − ŵ) H (w − ŵ)ᵀ with the removed weights fixed at zero. Rows have different supports,
so each chunk of rows gathers its H_SS blocks padded to the chunk's largest |S| with an
identity block (a padded coordinate has zero right-hand side, so it solves to 0); one
batched float64 Cholesky then serves the chunk, rows sharing a support included.
"""

from __future__ import annotations

import torch
from torch import Tensor

from prunekit.second_order.layerwise.hessian import robust_cholesky

CHUNK_BYTES = 512 * 2**20


def backsolve_workspace_bytes(rows: int, d_in: int, chunk_bytes: int = CHUNK_BYTES) -> int:
    """Bytes of one chunk of ``least_squares_on_support`` at its widest (every row
    keeping all d_in): the gathered H_SS systems and their Cholesky factors (float64)."""
    per_row = 8 * d_in * d_in
    return 2 * min(rows, max(1, chunk_bytes // max(per_row, 1))) * per_row


def least_squares_on_support(
    W: Tensor, H_damped: Tensor, kept: Tensor, *, chunk_bytes: int = CHUNK_BYTES
) -> Tensor:
    """Ŵ (float64, d_out × d_in) minimising Σ_rows (w − ŵ)H(w − ŵ)ᵀ with ŵ = 0 off ``kept``."""
    H = H_damped.to(torch.float64)
    W = W.to(torch.float64)
    d_out, d_in = W.shape
    target = W @ H  # row r: w H, whose entries on S are the right-hand side
    result = torch.zeros_like(W)
    sizes = kept.sum(1)
    order = torch.argsort(sizes, stable=True)  # similar sizes share a chunk: less padding
    widths = sizes[order].clamp_min(1).tolist()  # ascending
    start = 0
    while start < d_out:
        end = start + 1
        while end < d_out and (end + 1 - start) * 8 * widths[end] ** 2 <= chunk_bytes:
            end += 1
        _solve_rows(order[start:end], kept, H, target, result, widths[end - 1])
        start = end
    return result


def _solve_rows(rows: Tensor, kept: Tensor, H: Tensor, target: Tensor, out: Tensor, width: int):
    mask = kept[rows]
    # Kept indices first (ascending), then padding positions.
    order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices[:, :width]
    valid = torch.gather(mask, 1, order)
    system = H[order[:, :, None], order[:, None, :]]
    pair = valid[:, :, None] & valid[:, None, :]
    system = torch.where(pair, system, torch.zeros((), dtype=H.dtype))
    system = system + torch.diag_embed((~valid).to(H.dtype))
    rhs = torch.where(valid, torch.gather(target[rows], 1, order), torch.zeros((), dtype=H.dtype))
    solution = torch.cholesky_solve(rhs[:, :, None], robust_cholesky(system))[:, :, 0]
    block = torch.zeros(len(rows), out.shape[1], dtype=out.dtype, device=out.device)
    block.scatter_(1, order, torch.where(valid, solution, torch.zeros((), dtype=H.dtype)))
    out[rows] = block
