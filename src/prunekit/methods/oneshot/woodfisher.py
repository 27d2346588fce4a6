"""OBS / WoodFisher (Singh & Alistarh 2020).

Selection ``obs``: remove the k weights with the lowest saliency w_q² / (2 [F⁻¹]_qq),
globally across Fisher blocks. Update ``woodfisher``: the sum of the single-weight OBS
updates, δw = −F⁻¹ s with s_q = w_q / [F⁻¹]_qq for removed q (it ignores interactions
between removed weights; ``cbs_u`` does not). Preset ``woodfisher`` = ``obs+woodfisher``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from prunekit.methods.oneshot.problem import OneShotProblem
from prunekit.methods.oneshot.registry import (
    register_preset,
    register_selection,
    register_update,
)
from prunekit.methods.oneshot.results import Selection, Update
from prunekit.methods.oneshot.update import UpdateSettings, second_order_update
from prunekit.second_order import obs_saliency, woodfisher_select, woodfisher_update


@register_selection("obs", needs_fisher=True)
def obs_selection(problem: OneShotProblem, settings: None, update) -> Selection:
    """The k lowest OBS saliencies w_q² / (2 [F⁻¹]_qq) (first-order form with ḡ)."""
    # earlier removals stay removed (lowest_k ranks them first) and cannot compensate:
    # the saliencies of the others are those of F restricted to them
    local = problem.alive_model("obs")
    if problem.pattern is None:  # diag(F⁻¹) only where a weight can be among the lowest
        removed = ~local.alive
        k_alive = problem.k - int(removed.sum())
        removed[local.alive] = woodfisher_select(
            local.weights, local.fisher, k_alive, local.gradient
        )
        return Selection(removed.cpu())
    saliency = torch.full(local.alive.shape, -torch.inf, dtype=local.weights.dtype)
    saliency = saliency.to(local.weights.device)
    saliency[local.alive] = obs_saliency(local.weights, local.fisher, local.gradient)
    return Selection(problem.lowest_k(saliency).cpu())


@register_update("woodfisher", needs_fisher=True, settings=UpdateSettings)
def woodfisher_correction(
    problem: OneShotProblem, removed: Tensor, settings: UpdateSettings
) -> Update:
    """The sum of the single-weight OBS updates of the removed weights."""
    return second_order_update(problem, removed, settings, woodfisher_update, "woodfisher")


register_preset("woodfisher", "obs", "woodfisher")
