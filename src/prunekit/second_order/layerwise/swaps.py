"""Exact single swaps per row for the joint solver: add one removed weight, drop one kept.

At a backsolved point ŵ on the support S of a row (gradient g = (ŵ − w)H, g_S = 0),
freeing p ∉ S along e_p − v_p, v_p = (H_SS)⁻¹H_{S,p}, lowers the error by g_p²/(2σ_p) with
σ_p = H_pp − H_{p,S}v_p (Schur complement), moving ŵ_S to ŵ_S − α v_p, α = −g_p/σ_p.
On S' = S ∪ {p}, [(H_S'S')⁻¹]_qq = [(H_SS)⁻¹]_qq + v_{p,q}²/σ_p, so removing q ∈ S then
costs (ŵ_q − α v_{p,q})² / (2[(H_S'S')⁻¹]_qq) (OBS). Both are exact, so the best pair's
change is exact; every row takes its best pair when it lowers the error.
"""

from __future__ import annotations

import torch
from torch import Tensor

from prunekit.second_order.layerwise.hessian import robust_cholesky

CHUNK_BYTES = 256 * 2**20


def swaps_workspace_bytes(
    rows: int, d_in: int, candidates: int = 128, chunk_bytes: int = CHUNK_BYTES
) -> int:
    """Bytes of one chunk of ``best_swaps`` at its widest (a row keeping all d_in)."""
    per_row = 8 * (6 * min(candidates, d_in) + d_in) * d_in
    return min(rows, max(1, chunk_bytes // per_row)) * per_row


def best_swaps(
    w: Tensor,
    w_hat: Tensor,
    kept: Tensor,
    H: Tensor,
    pattern: tuple[int, int] | None = None,
    *,
    candidates: int = 128,
    chunk_bytes: int = CHUNK_BYTES,
) -> tuple[Tensor, Tensor, Tensor]:
    """For every row: (change, add, drop): the exact error change of its best swap (≥ 0
    when none helps) and the column added and dropped. ``w_hat`` must be the backsolve on
    ``kept`` with this (damped) H; under an N:M ``pattern`` both columns share a group.
    Only the ``candidates`` removed columns of each row with the largest g_p²/H_pp are
    tried as additions."""
    d_out, d_in = w.shape
    gradient = (w_hat - w) @ H
    sizes = kept.sum(1)
    width = max(int(sizes.max()), 1)
    change = torch.zeros(d_out, dtype=w.dtype, device=w.device)
    add = torch.zeros(d_out, dtype=torch.long, device=w.device)
    drop = torch.zeros(d_out, dtype=torch.long, device=w.device)
    rows_per_chunk = max(1, chunk_bytes // (8 * (6 * min(candidates, d_in) + width) * width))
    for start in range(0, d_out, rows_per_chunk):
        rows = torch.arange(start, min(d_out, start + rows_per_chunk), device=w.device)
        c, a, r = _chunk(w_hat[rows], kept[rows], gradient[rows], H, width, pattern, candidates)
        change[rows], add[rows], drop[rows] = c, a, r
    return change, add, drop


def _chunk(w_hat, kept, gradient, H, width, pattern, candidates):
    r, d = kept.shape
    zero = torch.zeros((), dtype=H.dtype, device=H.device)
    order = torch.sort((~kept).to(torch.int8), dim=1, stable=True).indices[:, :width]
    valid = torch.gather(kept, 1, order)
    system = H[order[:, :, None], order[:, None, :]]
    system = torch.where(valid[:, :, None] & valid[:, None, :], system, zero)
    system = system + torch.diag_embed((~valid).to(H.dtype))
    factor = robust_cholesky(system)
    # Candidates p: the ``candidates`` removed columns with the largest g_p²/H_pp, a lower
    # bound on the exact gain g_p²/σ_p (σ_p ≤ H_pp); only they are evaluated exactly.
    proxy = torch.where(~kept, gradient**2 / torch.diagonal(H), -1.0)
    count = min(candidates, d)
    columns = torch.topk(proxy, count, dim=1, sorted=False).indices  # (r, c)
    candidate = torch.gather(~kept, 1, columns)
    cross = H[order[:, :, None], columns[:, None, :]]  # H_{S,P}, (r, s, c)
    cross = torch.where(valid[:, :, None], cross, zero)
    y = torch.linalg.solve_triangular(factor, cross, upper=False)
    v = torch.linalg.solve_triangular(factor.mT, y, upper=True)  # (H_SS)⁻¹H_{S,P}
    eye = torch.eye(width, dtype=H.dtype, device=H.device).expand(r, width, width)
    inverse_diagonal = (torch.linalg.solve_triangular(factor, eye, upper=False) ** 2).sum(1)
    schur = torch.diagonal(H)[columns] - (y * y).sum(1)
    schur = schur.clamp_min(1e-12 * float(torch.diagonal(H).mean()))
    g = torch.gather(gradient, 1, columns)
    gain = torch.where(candidate, g**2 / (2 * schur), zero)
    alpha = -g / schur  # (r, c)
    kept_values = torch.gather(w_hat, 1, order)  # (r, s)
    new_values = kept_values[:, :, None] - alpha[:, None, :] * v
    new_diagonal = inverse_diagonal[:, :, None] + v * v / schur[:, None, :]
    cost = new_values**2 / (2 * new_diagonal)
    allowed = valid[:, :, None].expand_as(cost)
    if pattern is not None:
        m = pattern[1]
        allowed = allowed & ((order // m)[:, :, None] == (columns // m)[:, None, :])
    inf = torch.tensor(float("inf"), dtype=H.dtype, device=H.device)
    best_cost, best_q = torch.where(allowed, cost, inf).min(dim=1)  # per candidate p
    delta = torch.where(candidate, best_cost - gain, inf)
    change, best_p = delta.min(dim=1)
    rows = torch.arange(r, device=H.device)
    return change, columns[rows, best_p], order[rows, best_q[rows, best_p]]
