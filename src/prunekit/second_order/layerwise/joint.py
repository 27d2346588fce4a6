"""Joint support and weights ("lw_l0": layer-wise IHT + backsolve).

    minimise f(Ŵ) = Σ_rows (w − ŵ) H_damped (w − ŵ)ᵀ / 2  s.t. exactly ``count`` ŵ_ij = 0,

the count taken over the whole layer (rows trade removals freely), or per group of m
inputs of each row for an N:M pattern. From the start mask (SparseGPT's by default):

1. Backsolve: ŵ_S = w H_{:,S}(H_SS)⁻¹ per row (``least_squares_on_support``).
2. IHT step: g = (ŵ − w)H, z = ŵ − η g, keep the d_out·d_in − count largest |z| (at a
   backsolved point g_S = 0, so this weighs each kept |ŵ_q| against each removed η|g_p|),
   backsolve on the new support, accept if f dropped. η starts at 1/λ_max(H), doubles
   after an accepted step and halves after a rejected one down to 1/λ_max, where descent
   is guaranteed (the majorisation argument of IHT); the solver stops when the 1/λ_max
   step leaves the support unchanged, or after ``iterations`` steps.

The best iterate by the undamped error is returned, the start itself included, so the
error is never above the start's.
"""

from __future__ import annotations

import torch
from torch import Tensor

from prunekit.errors import ConfigError
from prunekit.second_order.layerwise.backsolve import (
    backsolve_workspace_bytes,
    least_squares_on_support,
)
from prunekit.second_order.layerwise.hessian import lambda_max, prepare_hessian
from prunekit.second_order.layerwise.magnitude import magnitude_layer
from prunekit.second_order.layerwise.obc import obc_layer
from prunekit.second_order.layerwise.objective import (
    LayerPruneResult,
    check_count,
    check_layer,
    layer_error,
    lowest_in_groups,
    lowest_k,
    make_result,
)
from prunekit.second_order.layerwise.sparsegpt import sparsegpt_layer
from prunekit.second_order.layerwise.swaps import best_swaps, swaps_workspace_bytes

STARTS = ("sparsegpt", "obc", "magnitude")


def joint_workspace_bytes(rows: int, d_in: int) -> int:
    """Bytes of ``joint_layer``'s largest chunk beyond H and the weights: a backsolve
    chunk or a swap chunk (they do not overlap)."""
    return max(backsolve_workspace_bytes(rows, d_in), swaps_workspace_bytes(rows, d_in))


def joint_layer(
    W: Tensor,
    H: Tensor,
    count: int | None,
    *,
    damp: float = 0.01,
    iterations: int = 100,
    swap_rounds: int = 100,
    pattern: tuple[int, int] | None = None,
    start: str = "sparsegpt",
    block_size: int = 128,
) -> LayerPruneResult:
    """Prune ``count`` weights of W (d_out × d_in) against H = 2XXᵀ/N by IHT with exact
    backsolves (module docstring), starting from ``start`` ∈ {"sparsegpt", "obc",
    "magnitude"}; ``iterations`` bounds the IHT steps tried (accepted or not)."""
    check_layer(W, H)
    count = check_count(W, count, pattern)
    if start == "sparsegpt":
        initial = sparsegpt_layer(W, H, count, damp=damp, block_size=block_size, pattern=pattern)
    elif start == "obc":
        initial = obc_layer(W, H, count, damp=damp, pattern=pattern)
    elif start == "magnitude":
        initial = magnitude_layer(W, H, count, pattern=pattern)
    else:
        raise ConfigError(f"unknown start {start!r}; choose from {', '.join(STARTS)}")
    H_damped, dead = prepare_hessian(H, damp)
    H_damped = H_damped.to(W.device)
    w = W.to(torch.float64).clone()
    w[:, dead.to(W.device)] = 0.0
    best = initial

    def objective(w_hat: Tensor) -> float:
        return float(layer_error(w, w_hat, H_damped))

    def consider(w_hat: Tensor, kept: Tensor) -> None:
        nonlocal best
        candidate = make_result(W, w_hat, kept, H, count)
        if candidate.error < best.error:
            best = candidate

    kept = initial.kept
    w_hat = least_squares_on_support(w, H_damped, kept)
    value = objective(w_hat)
    consider(w_hat, kept)
    smallest_step = 1.0 / max(lambda_max(H_damped), 1e-300)
    step = smallest_step
    budget = iterations
    for _ in range(swap_rounds + 1):
        # IHT with backsolves until the 1/λ_max step stalls (or the budget is spent).
        while budget > 0:
            budget -= 1
            z = (w_hat - step * ((w_hat - w) @ H_damped)).abs()
            removed = lowest_in_groups(z, pattern) if pattern else lowest_k(z, count)
            if torch.equal(~removed, kept):
                if step <= smallest_step:
                    break
                step = max(step / 2, smallest_step)
                continue
            trial = least_squares_on_support(w, H_damped, ~removed)
            trial_value = objective(trial)
            if trial_value < value:
                kept, w_hat, value = ~removed, trial, trial_value
                consider(w_hat, kept)
                step *= 2
            elif step <= smallest_step:
                break
            else:
                step = max(step / 2, smallest_step)
        if swap_rounds == 0:
            break
        # One exact swap per row where it helps, then the exact backsolve.
        change, add, drop = best_swaps(w, w_hat, kept, H_damped, pattern)
        better = change < -1e-12 * max(value, 1e-300)
        if not better.any():
            break
        rows = torch.nonzero(better).flatten()
        trial_kept = kept.clone()
        trial_kept[rows, add[rows]] = True
        trial_kept[rows, drop[rows]] = False
        trial = least_squares_on_support(w, H_damped, trial_kept)
        trial_value = objective(trial)
        if trial_value >= value:
            break
        kept, w_hat, value = trial_kept, trial, trial_value
        consider(w_hat, kept)
        step = smallest_step
    return best
