"""One-shot pruning of a trained network = a *selection* (which weights go) followed by
an optional *update* (how the kept weights compensate).

Selections (each removes exactly k = round(s·d) prunable weights):

- ``magnitude``: global magnitude, the k smallest |w|;
- ``layerwise_magnitude``: each layer's smallest |w| to sparsity s;
- ``obs``: OBS/WoodFisher saliency w_q² / (2 [F⁻¹]_qq), the k lowest;
- ``cbs_s``: CBS-S pairwise-swap local search on w_Pᵀ F_PP w_P (undamped F);
- ``random``, ``snip``, ``grasp``, ``synflow``: the pruning-at-initialization scores,
  computed on the trained weights (their own end of the ranking is removed).

Updates: ``none``; ``woodfisher`` (the sum of single-weight OBS updates); ``cbs_u`` (the
exact multi-weight OBS update). Presets: ``magnitude`` = magnitude+none, ``woodfisher``
= obs+woodfisher, ``cbs`` = cbs_s+cbs_u; any pair can be written ``selection+update``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from prunekit.errors import ConfigError
from prunekit.masks import Mask, count_to_remove
from prunekit.methods.oneshot.flat import (
    flatten_weights,
    mask_from_removed,
    removed_from_mask,
    unflatten,
)
from prunekit.methods.oneshot.magnitude import (
    global_magnitude_selection,
    layerwise_magnitude_selection,
)
from prunekit.second_order import (
    EmpiricalFisher,
    cbs_select,
    cbs_update,
    rmp_start,
    woodfisher_select,
    woodfisher_update,
)

SELECTIONS = (
    "magnitude",
    "layerwise_magnitude",
    "obs",
    "cbs_s",
    "random",
    "snip",
    "grasp",
    "synflow",
)
INIT_SCORE_SELECTIONS = ("random", "snip", "grasp", "synflow")
UPDATES = ("none", "woodfisher", "cbs_u")
PRESETS = {
    "magnitude": ("magnitude", "none"),
    "layerwise_magnitude": ("layerwise_magnitude", "none"),
    "woodfisher": ("obs", "woodfisher"),
    "cbs": ("cbs_s", "cbs_u"),
}
NEEDS_FISHER = ("obs", "cbs_s", "woodfisher", "cbs_u")


def parse_method(name: str) -> tuple[str, str]:
    """``"cbs"`` → ("cbs_s", "cbs_u"); ``"magnitude+cbs_u"`` → ("magnitude", "cbs_u")."""
    key = name.strip().lower().replace("-", "_")
    if key in PRESETS:
        return PRESETS[key]
    selection, _, update = key.partition("+")
    update = update or "none"
    if selection not in SELECTIONS or update not in UPDATES:
        raise ConfigError(
            f"unknown one-shot method {name!r}: use a preset ({', '.join(PRESETS)}) or "
            f"'selection+update' with selection in {', '.join(SELECTIONS)} and update in "
            f"{', '.join(UPDATES)}"
        )
    return selection, update


def needs_fisher(method: str) -> bool:
    return any(part in NEEDS_FISHER for part in parse_method(method))


@dataclass
class CBSSettings:
    """CBS settings. The CBS-S defaults are the CBS paper's (ε, ρ, τ, passes, patience,
    RMP trials); the update defaults give the plain exact update.

    Update options (they apply to any update, ``cbs_u`` or ``woodfisher``):

    - ``update_scale``: the correction of the *kept* weights is multiplied by this
      (the official CBS code's ``--scale-prune-update``; its published results use
      1.0). Removed weights are exactly zero whatever the scale.
    - ``update_scale_grid``: when non-empty, the scale is chosen among these values by
      the real loss on training data (``loss_of_weights``): lowest loss, earliest on
      ties; ``update_scale`` is then not used.
    - ``score_with_update``: CBS-S scores every RMP trial and every pass by the real
      training loss of the model *after* the method's update (with the scale rule
      above) instead of with the removed weights simply zeroed, so the search keeps the
      mask whose updated model is best on training data. Costs one update solve per
      trial and pass: cheap at high sparsity (a small kept set) or for small m.
    """

    swap_threshold: float = 1e-4
    rank_window: int = 10
    max_failures: int = 20
    max_passes: int = 100
    patience: int = 5
    start: str = "rmp"
    rmp_trials: int = 50
    update_scale: float = 1.0
    update_scale_grid: tuple[float, ...] = ()
    score_with_update: bool = False

    def __post_init__(self) -> None:
        if self.start not in ("rmp", "magnitude"):
            raise ConfigError(f"CBS start must be 'rmp' or 'magnitude', got {self.start!r}")
        self.update_scale_grid = tuple(float(a) for a in self.update_scale_grid)
        if not all(math.isfinite(a) for a in (self.update_scale, *self.update_scale_grid)):
            raise ConfigError("update scales must be finite numbers")


@dataclass
class OneShotResult:
    """The mask (True = kept), the new values of the prunable weights (removed ones
    exactly zero), and what happened: timings, predicted loss change, CBS history."""

    mask: Mask
    weights: dict[str, Tensor]
    info: dict = field(default_factory=dict)


def prune_one_shot(
    model: nn.Module,
    names: Sequence[str],
    method: str,
    sparsity: float,
    *,
    fisher: EmpiricalFisher | None = None,
    loss_of_weights: Callable[[Tensor], float] | None = None,
    init_scores: Callable[[str], Mask] | None = None,
    cbs: CBSSettings | None = None,
    update_solver: str = "auto",
    generator: torch.Generator | None = None,
) -> OneShotResult:
    """Prune ``model``'s ``names`` to ``sparsity`` with ``method``; the model is not changed.

    ``fisher`` (an :class:`EmpiricalFisher` of the same weights) is needed by OBS, CBS
    and WoodFisher; ``loss_of_weights(flat_w)`` returns the real loss on *training* data
    of the model with its prunable weights set to ``flat_w`` (CBS's outer loop and RMP
    start); ``init_scores(selection)`` returns the mask of a pruning-at-init score.
    """
    selection, update = parse_method(method)
    if any(part in NEEDS_FISHER for part in (selection, update)) and fisher is None:
        raise ConfigError(f"method {method!r} needs an empirical Fisher (gradient samples)")
    cbs = cbs or CBSSettings()
    w = flatten_weights(model, names)
    d = w.numel()
    if fisher is not None and fisher.dim != d:
        raise ConfigError(f"the Fisher covers {fisher.dim} weights but the model has {d} prunable")
    k = count_to_remove(sparsity, d)
    info: dict = {"selection": selection, "update": update, "removed": k, "prunable": d}

    started = time.perf_counter()
    if selection == "magnitude":
        removed = global_magnitude_selection(w, k)
    elif selection == "layerwise_magnitude":
        removed = layerwise_magnitude_selection(model, names, sparsity)
    elif selection == "obs":
        removed = woodfisher_select(w.to(fisher.dtype), fisher, k).cpu()
    elif selection == "cbs_s":
        removed = _cbs_selection(
            w, k, fisher, loss_of_weights, cbs, generator, info, update, update_solver
        )
    else:
        if init_scores is None:
            raise ConfigError(f"selection {selection!r} needs a scoring function")
        removed = removed_from_mask(init_scores(selection), names)
    info["selection_seconds"] = time.perf_counter() - started
    if int(removed.sum()) != k:
        raise AssertionError(f"selection removed {int(removed.sum())} weights, expected {k}")

    started = time.perf_counter()
    new_w, update_info = _apply_update(
        w, removed, update, fisher, update_solver, cbs, loss_of_weights
    )
    info.update(update_info)
    info["update_seconds"] = time.perf_counter() - started
    return OneShotResult(
        mask=mask_from_removed(removed, model, names),
        weights=unflatten(new_w, model, names),
        info=info,
    )


def _cbs_u(solver: str):
    return lambda w, fisher, removed: cbs_update(w, fisher, removed, solver=solver)


def _apply_update(
    w: Tensor,
    removed: Tensor,
    update: str,
    fisher: EmpiricalFisher | None,
    solver: str,
    settings: CBSSettings,
    loss_of_weights: Callable[[Tensor], float] | None,
) -> tuple[Tensor, dict]:
    """The new prunable weights (removed ones exactly zero) after ``update``, with the
    kept weights' correction scaled by ``settings.update_scale`` or by the scale of
    ``settings.update_scale_grid`` with the lowest training loss."""
    keep = ~removed.to(w.device)
    if update == "none":
        return w * keep, {"predicted_loss_change": None}
    solve = woodfisher_update if update == "woodfisher" else _cbs_u(solver)
    result = solve(w.to(fisher.dtype), fisher, removed.to(fisher.device))
    correction = result.delta.to(w.dtype).cpu()

    def weights_at(scale: float) -> Tensor:
        return (w + scale * correction) * keep

    info: dict = {}
    scale = settings.update_scale
    if settings.update_scale_grid:
        if loss_of_weights is None:
            raise ConfigError("update_scale_grid needs loss_of_weights: the loss on training data")
        losses = [float(loss_of_weights(weights_at(a))) for a in settings.update_scale_grid]
        best = min(range(len(losses)), key=lambda i: (losses[i], i))
        scale = settings.update_scale_grid[best]
        info["update_scale_losses"] = dict(zip(settings.update_scale_grid, losses, strict=True))
    new_w = weights_at(scale)
    if scale == 1.0:
        predicted = result.loss_change
    else:
        predicted = 0.5 * float(fisher.quadratic((new_w - w).to(fisher.dtype).to(fisher.device)))
    info.update(update_scale=scale, predicted_loss_change=predicted)
    return new_w, info


def _cbs_selection(
    w, k, fisher, loss_of_weights, settings, generator, info, update, solver
) -> Tensor:
    """RMP (or magnitude) start, then the pairwise-swap search scored by the real loss
    on training data: of the weights with the removed ones zeroed, or (with
    ``settings.score_with_update``) of the weights after the method's update."""
    if loss_of_weights is None:
        raise ConfigError("CBS-S needs loss_of_weights: the real loss on training data")
    scored_update = update if settings.score_with_update else "none"

    def loss_of_mask(removed: Tensor) -> float:
        new_w, _ = _apply_update(
            w, removed, scored_update, fisher, solver, settings, loss_of_weights
        )
        return float(loss_of_weights(new_w))

    wf = w.to(fisher.dtype).to(fisher.device)
    if settings.start == "rmp":
        start = rmp_start(wf, k, settings.rmp_trials, generator, loss_of_mask)
    else:
        start = global_magnitude_selection(wf, k)
    result = cbs_select(
        wf,
        fisher.grads,
        start,
        loss_of_mask,
        blocks=fisher.blocks,
        swap_threshold=settings.swap_threshold,
        rank_window=settings.rank_window,
        max_failures=settings.max_failures,
        max_passes=settings.max_passes,
        patience=settings.patience,
    )
    info["cbs_scored_with_update"] = scored_update != "none"
    info["cbs_best_pass"] = result.best_pass
    info["cbs_passes"] = len(result.history) - 1
    info["cbs_history"] = [
        {"pass": r.pass_index, "quadratic": r.quadratic_loss, "loss": r.loss, "swaps": r.swaps}
        for r in result.history
    ]
    return result.removed.cpu()
