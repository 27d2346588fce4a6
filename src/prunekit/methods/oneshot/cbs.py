"""Combinatorial Brain Surgeon (Yu, Serra, Ramalingam, Zhe 2022).

Selection ``cbs_s``: a randomised-magnitude (RMP) or magnitude start, then pairwise-swap
local search on L(P) = w_Pᵀ F_PP w_P (undamped F), the outer loop scored by the real
loss on training data. Update ``cbs_u``: the exact multi-weight OBS update
δw = −F⁻¹ E_Q [(F⁻¹)_QQ]⁻¹ w_Q for the removal set Q. Preset ``cbs`` = ``cbs_s+cbs_u``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from prunekit.errors import ConfigError
from prunekit.methods.oneshot.problem import OneShotProblem
from prunekit.methods.oneshot.registry import (
    register_preset,
    register_selection,
    register_update,
)
from prunekit.methods.oneshot.results import SearchPass, SearchReport, Selection, Update
from prunekit.methods.oneshot.update import UpdateSettings, second_order_update
from prunekit.second_order import (
    cbs_select,
    cbs_update,
    magnitude_start,
    rmp_start,
)
from prunekit.utils.settings import setting


@dataclass
class CBSSettings:
    """CBS-S search settings; the defaults are the CBS paper's (ε, ρ, τ, passes,
    patience, 50 RMP trials).

    ``score_with_update``: score every RMP trial and every pass by the real training
    loss of the model *after* the paired update (with its scale rule) instead of with
    the removed weights simply zeroed, so the search keeps the mask whose updated model
    is best on training data. Costs one update solve per trial and pass."""

    swap_threshold: float = setting(
        1e-4, "CBS-S ε: accept a swap when it lowers L(P) by at least this"
    )
    rank_window: int = setting(10, "CBS-S ρ: swap partners tried within ±ρ ranks")
    max_failures: int = setting(20, "CBS-S τ: failures before a pass stops")
    max_passes: int = setting(100, "CBS-S: passes at most")
    patience: int = setting(5, "CBS-S: stop after this many passes without a lower real loss")
    start: str = setting("rmp", "CBS-S start", choices=["rmp", "magnitude"])
    rmp_trials: int = setting(50, "CBS-S: randomised-magnitude trials for the start")
    score_with_update: bool = setting(
        False, "CBS-S: score RMP trials and passes by the training loss after the update"
    )

    def __post_init__(self) -> None:
        if self.start not in ("rmp", "magnitude"):
            raise ConfigError(f"CBS start must be 'rmp' or 'magnitude', got {self.start!r}")
        for name in ("rank_window", "max_failures", "max_passes", "patience", "rmp_trials"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"CBS {name} must be >= 1, got {getattr(self, name)}")


@register_selection("cbs_s", needs_fisher=True, settings=CBSSettings)
def cbs_selection(
    problem: OneShotProblem, settings: CBSSettings, update: Callable[[Tensor], Update]
) -> Selection:
    """RMP (or magnitude) start, then the pairwise-swap search, scored by the real loss
    on training data of the weights with the removed ones zeroed, or (with
    ``score_with_update``) after the paired update."""
    training_loss = problem.require_training_loss("cbs_s")
    w = problem.weights
    # Earlier removals stay removed: search over the weights still alive only (the
    # removed ones are zero, so they add nothing to L(P)), then put them back.
    local = problem.alive_model("cbs_s")
    alive = local.alive.cpu()
    fixed_count = int((~alive).sum())

    def full_mask(removed_alive: Tensor) -> Tensor:
        removed = ~alive.clone()
        removed[alive] = removed_alive.cpu()
        return removed

    def loss_of_mask(removed_alive: Tensor) -> float:
        removed = full_mask(removed_alive).to(w.device)
        new_w = update(removed).weights if settings.score_with_update else w * ~removed
        return float(training_loss(new_w))

    wf = local.weights
    grads, blocks = local.fisher.grads, local.fisher.blocks
    k = problem.k - fixed_count
    groups = problem.groups()
    if groups is not None:  # an N:M pattern: its magnitude mask, then swaps within groups
        start = problem.lowest_k(w.abs())[alive.to(w.device)].to(wf.device)
        groups = groups[alive]
    elif settings.start == "rmp":
        start = rmp_start(wf, k, settings.rmp_trials, problem.generator, loss_of_mask)
    else:
        start = magnitude_start(wf, k)
    result = cbs_select(
        wf,
        grads,
        start,
        loss_of_mask,
        blocks=blocks,
        swap_threshold=settings.swap_threshold,
        rank_window=settings.rank_window,
        max_failures=settings.max_failures,
        max_passes=settings.max_passes,
        patience=settings.patience,
        groups=groups,
    )
    report = SearchReport(
        best_pass=result.best_pass,
        passes=len(result.history) - 1,
        scored_with_update=settings.score_with_update,
        history=[
            SearchPass(r.pass_index, r.quadratic_loss, r.loss, r.swaps) for r in result.history
        ],
    )
    return Selection(full_mask(result.removed), report)


@register_update("cbs_u", needs_fisher=True, settings=UpdateSettings)
def cbs_correction(problem: OneShotProblem, removed: Tensor, settings: UpdateSettings) -> Update:
    """The exact multi-weight OBS update for the removal set."""

    def solve(w: Tensor, fisher, removed: Tensor, gradient: Tensor | None):
        return cbs_update(w, fisher, removed, solver=settings.solver, gradient=gradient)

    return second_order_update(problem, removed, settings, solve, "cbs_u")


register_preset("cbs", "cbs_s", "cbs_u")
