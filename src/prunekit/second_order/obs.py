"""OBS / WoodFisher: single-weight saliencies, global selection, and the summed update.

Convention: ``removed`` masks are bool tensors of length d, True = removed. An optional
mean gradient ḡ (``gradient``) uses the local model ḡᵀδ + ½δᵀFδ instead of ½δᵀFδ;
None gives the classical OBS formulas (see ``local_model``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from prunekit.errors import ConfigError
from prunekit.second_order.fisher import EmpiricalFisher
from prunekit.second_order.local_model import (
    check_gradient,
    local_change,
    newton_point,
    solve_without_settled,
)


@dataclass
class WeightUpdate:
    """Result of a second-order weight update.

    ``weights`` = w + δw with the removed weights exactly zero; ``delta`` = δw;
    ``loss_change`` = ḡᵀδw + ½ δwᵀFδw, the local model's predicted loss change
    (ḡ = 0 when no mean gradient is given, and then it is ½ δwᵀFδw ≥ 0)."""

    weights: Tensor
    delta: Tensor
    loss_change: float


def lowest_k_mask(scores: Tensor, k: int) -> Tensor:
    """Bool mask (True = removed) of exactly ``k`` entries with the lowest scores.

    Ties are broken by index (a stable sort on the value), so the same scores always
    give the same mask."""
    scores = scores.flatten()
    if not 0 <= k <= scores.numel():
        raise ConfigError(f"cannot remove {k} of {scores.numel()} weights")
    if torch.isnan(scores).any():
        raise ConfigError(
            "scores contain NaN: check that the model's weights and the Fisher's gradients "
            "are finite (NaN weights give NaN scores)"
        )
    order = torch.sort(scores, stable=True).indices
    removed = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
    removed[order[:k]] = True
    return removed


def obs_saliency(w: Tensor, fisher: EmpiricalFisher, gradient: Tensor | None = None) -> Tensor:
    """ρ_q = w_q² / (2 [F⁻¹]_qq): the loss increase of removing weight q alone with the
    optimal compensating update of the others.

    With a mean gradient ḡ: ρ_q = (w_q − (F⁻¹ḡ)_q)² / (2 [F⁻¹]_qq), OBS at the Newton
    point w̃ = w − F⁻¹ḡ. Removing q alone then changes the loss by −½ḡᵀF⁻¹ḡ + ρ_q:
    ρ_q is measured from the unconstrained optimum, which is the same for every q."""
    inverse_diagonal = fisher.inverse_diagonal()
    if gradient is None:
        w = w.to(inverse_diagonal.dtype)
    else:
        w = newton_point(w, fisher, gradient)
    return w * w / (2.0 * inverse_diagonal)


def woodfisher_select(
    w: Tensor, fisher: EmpiricalFisher, k: int, gradient: Tensor | None = None
) -> Tensor:
    """Removal mask of the ``k`` weights with the lowest OBS saliency, global across
    blocks: ``lowest_k_mask(obs_saliency(w, fisher, gradient), k)``, with [F⁻¹]_qq
    computed only where the weight can be among the k lowest.

    [F⁻¹]_qq lies in [1/F_qq, 1/λ], so ρ_q lies in [w̃_q²λ/2, w̃_q²F_qq/2]. With τ the
    k-th lowest upper bound, at least k saliencies are ≤ τ, and a weight whose lower
    bound is above τ is not among the k lowest: its diagonal entry is never needed.
    The exact saliencies of the others decide (ties by index, as in ``lowest_k_mask``).
    At a stage that removes few of many weights this skips most of the O(m²·d)
    triangular solves of the whole diagonal."""
    w = newton_point(w, fisher, gradient)
    d = w.numel()
    if not 0 <= k <= d:
        raise ConfigError(f"cannot remove {k} of {d} weights")
    if k == 0 or k == d or fisher.has_inverse_diagonal:
        return lowest_k_mask(w * w / (2.0 * fisher.inverse_diagonal()), k)
    square = w * w
    upper = square * fisher.fisher_diagonal() / 2.0
    lower = square * fisher.damp / 2.0
    if bool(torch.isnan(upper).any()):
        return lowest_k_mask(upper, k)  # the same error as the full saliency gives
    threshold = torch.kthvalue(upper.cpu(), k).values.to(upper.device)
    # a relative margin covers the rounding of the bounds against the clamped diagonal
    candidates = (lower <= threshold * (1 + 1e-5) + torch.finfo(w.dtype).tiny).nonzero()
    candidates = candidates.flatten()
    saliency = torch.full_like(w, torch.inf)
    saliency[candidates] = square[candidates] / (
        2.0 * fisher.inverse_diagonal_at(candidates)
    )
    return lowest_k_mask(saliency, k)


def woodfisher_update(
    w: Tensor, fisher: EmpiricalFisher, removed: Tensor, gradient: Tensor | None = None
) -> WeightUpdate:
    """WoodFisher's joint update: the sum of the single-weight OBS updates,
    δw = −F⁻¹ s with s_q = w_q / [F⁻¹]_qq for removed q and 0 elsewhere; then the
    removed weights are set to exactly zero. Ignores interactions between removed
    weights (CBS-U does not).

    With a mean gradient ḡ the single-weight updates are taken from the Newton point
    w̃ = w − F⁻¹ḡ: δw = −F⁻¹(ḡ + s) with s_q = w̃_q / [F⁻¹]_qq, removed weights then
    set to zero; ``loss_change`` = ḡᵀδw + ½δwᵀFδw. Removed weights that are already
    zero (earlier stages' removals) are held there: the step is taken on F restricted
    to the other weights (``solve_without_settled``)."""
    removed = _check_mask(removed, fisher.dim).to(fisher.device)
    w = w.to(device=fisher.device, dtype=fisher.dtype)
    gradient = check_gradient(gradient, fisher)
    delta = solve_without_settled(_summed_obs_step, w, fisher, removed, gradient)
    delta[removed] = -w[removed]
    weights = w + delta
    weights[removed] = 0.0
    return WeightUpdate(weights, delta, local_change(delta, fisher, gradient))


def _summed_obs_step(
    w: Tensor, fisher: EmpiricalFisher, removed: Tensor, gradient: Tensor | None
) -> Tensor:
    """−F⁻¹(ḡ + s), s_q = w̃_q / [F⁻¹]_qq on the removed q (w̃ = w without ḡ); the
    diagonal of F⁻¹ is computed at the removed weights only."""
    newton = newton_point(w, fisher, gradient)
    where = removed.nonzero().flatten()
    s = torch.zeros_like(newton)
    s[where] = newton[where] / fisher.inverse_diagonal_at(where)
    return -fisher.inverse_matvec(s if gradient is None else gradient + s)


def _check_mask(removed: Tensor, d: int) -> Tensor:
    if removed.dtype != torch.bool or removed.shape != (d,):
        raise ConfigError(
            f"removed must be a bool tensor of length {d}, got {removed.dtype} "
            f"{tuple(removed.shape)}"
        )
    return removed
