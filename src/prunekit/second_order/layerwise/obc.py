"""OBC / ExactOBS: exact greedy OBS per row, rows batched, then counts chosen over the layer.

Each row repeats: remove p = argmin w_p²/[H⁻¹]_pp (cost w_p²/(2[H⁻¹]_pp)), update
w −= (w_p/[H⁻¹]_pp)·H⁻¹_{:,p}, downdate H⁻¹ −= H⁻¹_{:,p}H⁻¹_{p,:}/[H⁻¹]_pp. Every row of a
chunk removes one weight per step, so all rows keep the same number of live columns and
the chunk's H⁻¹ copies (r × a × a) are compacted to the live columns whenever a quarter of
them has gone (the removed rows and columns of H⁻¹ are zero).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from prunekit.errors import ConfigError
from prunekit.second_order.layerwise.backsolve import least_squares_on_support
from prunekit.second_order.layerwise.hessian import damped_inverse, prepare_hessian
from prunekit.second_order.layerwise.objective import (
    LayerPruneResult,
    check_count,
    check_layer,
    make_result,
)

CHUNK_BYTES = 2**30


def obc_workspace_bytes(rows: int, d_in: int, chunk_bytes: int = CHUNK_BYTES) -> int:
    """Bytes of one chunk of H⁻¹ copies (float64, r × d_in × d_in with r rows at a time),
    the bulk of ``obc_layer``'s memory beyond H itself."""
    per_row = 8 * d_in * d_in
    return min(rows, max(1, chunk_bytes // max(per_row, 1))) * per_row


def obc_layer(
    W: Tensor,
    H: Tensor,
    count: int | None,
    *,
    damp: float = 0.01,
    pattern: tuple[int, int] | None = None,
    row_counts: Tensor | None = None,
    max_row_count: int | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> LayerPruneResult:
    """Prune ``count`` weights of W (d_out × d_in) by exact greedy OBS per row.

    Counts per row: each row's greedy sequence is run to ``max_row_count`` removals
    (default min(d_in, ⌈1.25·count/d_out⌉ + 8)) and its marginal costs recorded; the
    layer then takes the ``count`` cheapest removals under the prefix constraint, ranking
    removal t of a row by the running maximum of that row's marginal costs up to t (ties
    to the earlier step, then the lower row): a greedy on the marginal costs whose choice
    is always a prefix of every row's sequence. The weights are then the exact least
    squares on the chosen support (what the OBS updates give in exact arithmetic).
    ``row_counts`` (d_out integers summing to count) fixes the counts instead, and the
    weights are those of the greedy updates themselves. With ``pattern`` = (n, m) every
    row removes m − n per group, greedily among the groups not yet full.

    Dead inputs (H_ii = 0) have their weights zeroed first: they cost 0 and go first.
    Computation is float64; rows go in chunks of at most ``chunk_bytes`` of H⁻¹ copies."""
    check_layer(W, H)
    count = check_count(W, count, pattern)
    d_out, d_in = W.shape
    H_damped, dead = prepare_hessian(H, damp)
    H_damped = H_damped.to(W.device)
    inverse = damped_inverse(H_damped)
    weights = W.to(torch.float64).clone()
    weights[:, dead.to(W.device)] = 0.0

    if pattern is not None:
        per_row = d_in // pattern[1] * (pattern[1] - pattern[0])
        row_counts = torch.full((d_out,), per_row, dtype=torch.long)
    if row_counts is not None:
        row_counts = torch.as_tensor(row_counts, dtype=torch.long).cpu()
        if row_counts.shape != (d_out,) or int(row_counts.sum()) != count:
            raise ConfigError(f"row_counts must be {d_out} integers summing to {count}")
        if int(row_counts.min()) < 0 or int(row_counts.max()) > d_in:
            raise ConfigError(f"row_counts must lie in [0, {d_in}]")
        steps = int(row_counts.max()) if d_out else 0
    else:
        steps = max_row_count or min(d_in, math.ceil(1.25 * count / max(d_out, 1)) + 8)
        steps = min(d_in, max(steps, math.ceil(count / max(d_out, 1))))

    # Dead inputs are decoupled in H_damped and their weights are 0: removing them is
    # free and changes nothing else, so every row's sequence starts with them (under N:M
    # only as many per group as the group may lose) and the greedy runs on the others.
    free = dead.clone()
    if pattern is not None:
        n, m = pattern
        groups = torch.arange(d_in) // m
        rank_in_group = torch.cumsum(dead.reshape(-1, m).long(), dim=1).reshape(-1)
        free &= rank_in_group <= m - n
    free = free.to(W.device)
    free_index = torch.nonzero(free).flatten()
    rest_index = torch.nonzero(~free).flatten()
    n_free = len(free_index)
    order = torch.zeros(d_out, steps, dtype=torch.long, device=W.device)
    costs = torch.zeros(d_out, steps, dtype=torch.float64, device=W.device)
    order[:, : min(steps, n_free)] = free_index[:steps]
    rest_steps = max(0, steps - n_free)
    rest_inverse = inverse[rest_index][:, rest_index]
    final = weights.clone()
    rows_per_chunk = max(1, chunk_bytes // (8 * max(len(rest_index), 1) ** 2))  # see above
    for start in range(0, d_out if rest_steps else 0, rows_per_chunk):
        rows = slice(start, min(d_out, start + rows_per_chunk))
        snapshot, room, group_of = None, None, None
        if row_counts is not None:
            snapshot = (row_counts[rows].to(W.device) - n_free).clamp_min(0)
        if pattern is not None:
            group_of = (rest_index // m).to(W.device)
            freed = torch.bincount(groups[free.cpu()], minlength=d_in // m).to(W.device)
            room = (m - n - freed).expand(rows.stop - rows.start, -1).contiguous()
        chunk_final = weights[rows][:, rest_index]
        local_order = order[rows, n_free:]
        _greedy_rows(
            weights[rows][:, rest_index],
            rest_inverse,
            rest_steps,
            room,
            group_of,
            snapshot,
            local_order,
            costs[rows, n_free:],
            chunk_final,
        )
        order[rows, n_free:] = rest_index[local_order]
        final[rows.start : rows.stop, rest_index] = chunk_final

    if row_counts is None:
        kept = _allocate(order, costs, count, d_in)
        final = least_squares_on_support(weights, H_damped, kept)
    else:
        kept = torch.ones(d_out, d_in, dtype=torch.bool, device=W.device)
        taken = torch.arange(steps, device=W.device)[None, :] < row_counts.to(W.device)[:, None]
        row_index = torch.arange(d_out, device=W.device)[:, None].expand_as(order)
        kept[row_index[taken], order[taken]] = False
    return make_result(W, final, kept, H, count)


def _greedy_rows(w, inverse, steps, room, group_of, snapshot, order_out, costs_out, final_out):
    """Run ``steps`` greedy OBS removals on the rows ``w`` (r × d), writing the removed
    column (local index) of each step, its marginal cost, and, when ``snapshot`` gives
    per-row counts, each row's weights after its own count into ``final_out``. ``room``
    (r × groups) and ``group_of`` (d) restrict removals to groups with room left (N:M)."""
    r, d = w.shape
    device = w.device
    rows = torch.arange(r, device=device)
    columns = torch.arange(d, device=device).expand(r, d).contiguous()  # live column ids
    w = w.clone()
    inv = inverse.expand(r, d, d).clone()
    live = torch.ones(r, d, dtype=torch.bool, device=device)
    inf = torch.tensor(float("inf"), dtype=w.dtype, device=device)
    for step in range(steps):
        diagonal = torch.diagonal(inv, dim1=1, dim2=2)
        allowed = live
        if room is not None:
            allowed = live & (torch.gather(room, 1, group_of[columns]) > 0)
        scores = torch.where(allowed, w * w / diagonal.clamp_min(1e-300), inf)
        p = torch.argmin(scores, dim=1)
        pivot = diagonal[rows, p].clamp_min(1e-300)
        wp = w[rows, p]
        order_out[:, step] = columns[rows, p]
        costs_out[:, step] = wp * wp / (2 * pivot)
        direction = inv[rows, :, p]  # (r, a): H⁻¹_{:,p}
        w -= (wp / pivot)[:, None] * direction
        w[rows, p] = 0.0
        inv.baddbmm_(direction[:, :, None], (direction / pivot[:, None])[:, None, :], alpha=-1)
        live[rows, p] = False
        if room is not None:
            room[rows, group_of[columns[rows, p]]] -= 1
        if snapshot is not None:
            done = snapshot == step + 1
            if done.any():
                full = w.new_zeros(int(done.sum()), final_out.shape[1])
                full.scatter_(1, columns[done], torch.where(live[done], w[done], 0.0))
                final_out[done] = full
        alive = d - (step + 1)  # live columns per row (each row removed step + 1)
        if 0 < alive <= 0.75 * live.shape[1] and step + 1 < steps:
            keep = torch.sort((~live).to(torch.int8), dim=1, stable=True).indices[:, :alive]
            columns = torch.gather(columns, 1, keep)
            w = torch.gather(w, 1, keep)
            inv = inv[rows[:, None, None], keep[:, :, None], keep[:, None, :]]
            live = torch.ones_like(columns, dtype=torch.bool)


def _allocate(order: Tensor, costs: Tensor, count: int, d_in: int) -> Tensor:
    """kept mask (True = kept) from the ``count`` cheapest removals, prefixes of each row:
    removal t of a row is ranked by the running max of the row's marginal costs up to t."""
    d_out, steps = order.shape
    key = torch.cummax(costs, dim=1).values
    flat = key.T.reshape(-1)  # index t·d_out + r: ties go to the earlier step, then row
    chosen = torch.zeros_like(flat, dtype=torch.bool)
    chosen[torch.sort(flat, stable=True).indices[:count]] = True
    chosen = chosen.reshape(steps, d_out).T
    kept = torch.ones(d_out, d_in, dtype=torch.bool, device=order.device)
    row_index = torch.arange(d_out, device=order.device)[:, None].expand_as(order)
    kept[row_index[chosen], order[chosen]] = False
    return kept
