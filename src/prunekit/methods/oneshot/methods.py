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
    """CBS-S settings; defaults are the CBS paper's (ε, ρ, τ, passes, patience, RMP trials)."""

    swap_threshold: float = 1e-4
    rank_window: int = 10
    max_failures: int = 20
    max_passes: int = 100
    patience: int = 5
    start: str = "rmp"
    rmp_trials: int = 50

    def __post_init__(self) -> None:
        if self.start not in ("rmp", "magnitude"):
            raise ConfigError(f"CBS start must be 'rmp' or 'magnitude', got {self.start!r}")


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
        removed = _cbs_selection(w, k, fisher, loss_of_weights, cbs, generator, info)
    else:
        if init_scores is None:
            raise ConfigError(f"selection {selection!r} needs a scoring function")
        removed = removed_from_mask(init_scores(selection), names)
    info["selection_seconds"] = time.perf_counter() - started
    if int(removed.sum()) != k:
        raise AssertionError(f"selection removed {int(removed.sum())} weights, expected {k}")

    started = time.perf_counter()
    if update == "none":
        new_w = w * ~removed.to(w.device)
        info["predicted_loss_change"] = None
    else:
        solve = woodfisher_update if update == "woodfisher" else _cbs_u(update_solver)
        result = solve(w.to(fisher.dtype), fisher, removed.to(fisher.device))
        new_w = result.weights.to(w.dtype).cpu()
        new_w[removed] = 0.0
        info["predicted_loss_change"] = result.loss_change
    info["update_seconds"] = time.perf_counter() - started
    return OneShotResult(
        mask=mask_from_removed(removed, model, names),
        weights=unflatten(new_w, model, names),
        info=info,
    )


def _cbs_u(solver: str):
    return lambda w, fisher, removed: cbs_update(w, fisher, removed, solver=solver)


def _cbs_selection(w, k, fisher, loss_of_weights, settings, generator, info) -> Tensor:
    """RMP (or magnitude) start, then the pairwise-swap search scored by the real loss."""
    if loss_of_weights is None:
        raise ConfigError("CBS-S needs loss_of_weights: the real loss on training data")

    def loss_without_update(removed: Tensor) -> float:
        return float(loss_of_weights(w * ~removed.to(w.device)))

    wf = w.to(fisher.dtype).to(fisher.device)
    if settings.start == "rmp":
        start = rmp_start(wf, k, settings.rmp_trials, generator, loss_without_update)
    else:
        start = global_magnitude_selection(wf, k)
    result = cbs_select(
        wf,
        fisher.grads,
        start,
        loss_without_update,
        blocks=fisher.blocks,
        swap_threshold=settings.swap_threshold,
        rank_window=settings.rank_window,
        max_failures=settings.max_failures,
        max_passes=settings.max_passes,
        patience=settings.patience,
    )
    info["cbs_best_pass"] = result.best_pass
    info["cbs_passes"] = len(result.history) - 1
    info["cbs_history"] = [
        {"pass": r.pass_index, "quadratic": r.quadratic_loss, "loss": r.loss, "swaps": r.swaps}
        for r in result.history
    ]
    return result.removed.cpu()
