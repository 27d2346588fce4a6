"""Joint L0 solver (CHITA-style): choose the removal set and the new weights together
by minimising the local model ḡᵀδ + ½δᵀFδ subject to exactly k weights removed.

Selection ``l0``: iterative hard thresholding on the factored Fisher from warm starts
(magnitude and/or OBS), an exact backsolve on each support, then swap passes
(``second_order.l0_solve``). Earlier removals (``fixed_removed``) stay removed: the
solve runs on the weights still alive. Preset
``l0`` = ``l0+cbs_u``: the exact update on the chosen support, which is the solver's own
backsolve: the selection hands it over (``Selection.exact_step``) and CBS-U applies it
without solving again.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from prunekit.errors import ConfigError
from prunekit.methods.oneshot.problem import OneShotProblem
from prunekit.methods.oneshot.registry import register_preset, register_selection
from prunekit.methods.oneshot.results import SearchPass, SearchReport, Selection
from prunekit.second_order import EmpiricalFisher, l0_solve, lowest_k_mask, woodfisher_select
from prunekit.utils.settings import setting


@dataclass
class L0Settings:
    """Settings of the joint L0 solver."""

    starts: str = setting(
        "magnitude,obs", "warm starts, comma-separated: magnitude, obs (best run kept)"
    )
    max_iterations: int = setting(100, "L0: IHT iterations per round at most")
    max_rounds: int = setting(5, "L0: IHT + backsolve rounds while the support changes")
    max_swap_rounds: int = setting(20, "L0: swap batches tried (0: no swaps)")
    swap_candidates: int = setting(128, "L0: candidate weights per side for swaps")
    tol: float = setting(1e-6, "L0: relative decrease under which IHT has stalled")

    def __post_init__(self) -> None:
        names = [s.strip() for s in str(self.starts).split(",") if s.strip()]
        if not names or any(s not in ("magnitude", "obs") for s in names):
            raise ConfigError(f"l0 starts must be magnitude and/or obs, got {self.starts!r}")
        if self.max_iterations < 0 or self.max_rounds < 1 or self.max_swap_rounds < 0:
            raise ConfigError("l0 needs max_iterations ≥ 0, max_rounds ≥ 1, max_swap_rounds ≥ 0")
        if not 0 <= self.tol < float("inf"):  # NaN compares False: refused too
            raise ConfigError(f"l0 tol must be a finite number >= 0, got {self.tol}")

    @property
    def start_names(self) -> list[str]:
        return [s.strip() for s in self.starts.split(",") if s.strip()]


@register_selection("l0", needs_fisher=True, settings=L0Settings)
def l0_selection(problem: OneShotProblem, settings: L0Settings, update) -> Selection:
    """IHT + backsolve + swaps on the local model, from magnitude/OBS warm starts."""
    if problem.pattern is not None:
        raise ConfigError(
            "the l0 solver does not take N:M patterns yet; use cbs, woodfisher or "
            "magnitude+cbs_u with --pattern"
        )
    # Earlier removals are held at zero, which is the same as dropping their
    # coordinates: solve on the weights still alive only (F restricted to them).
    # G over the alive weights, weight-major (the solver's Gᵀ): the Fisher itself when
    # it covers them only and is weight-major, else one (|alive|, m) copy, not cached
    local = problem.alive_model("l0", cached=False)
    alive, w_alive, gradient_alive, sub = local.alive, local.weights, local.gradient, local.fisher
    k_alive = problem.k - int((~alive).sum())
    starts = [
        alive_start(name, w_alive, sub, gradient_alive, k_alive) for name in settings.start_names
    ]
    # the OBS start's factors (the Cholesky factor of mλI + GGᵀ over each Woodbury
    # block's alive weights, or the explicit F⁻¹ of a small block) seed the solver's
    # backsolves: each start's removals are then a low-rank change of them
    factors = {b: sub.block_factor(b) for b in range(len(sub.blocks)) if sub.has_factor(b)}
    sub.release_factors()  # the solver's model holds the factors from here on
    result = l0_solve(
        w_alive,
        sub,
        k_alive,
        gradient=gradient_alive,
        start=starts,
        max_iterations=settings.max_iterations,
        tol=settings.tol,
        max_rounds=settings.max_rounds,
        max_swap_rounds=settings.max_swap_rounds,
        swap_candidates=settings.swap_candidates,
        base_factors=factors,
    )
    removed = ~alive
    removed[alive] = result.removed
    step = torch.zeros(alive.shape, dtype=w_alive.dtype, device=w_alive.device)
    # earlier removals are zero and stay there
    step[alive] = result.weights.to(w_alive) - w_alive
    history = [
        SearchPass(i, step.objective, None, 1 if step.phase == "swap" else 0)
        for i, step in enumerate(result.history)
    ]
    report = SearchReport(
        best_pass=len(history) - 1,
        passes=result.iterations,
        scored_with_update=True,
        history=history,
    )
    return Selection(removed.cpu(), report, exact_step=step.cpu())


def alive_start(
    name: str, w: Tensor, fisher: EmpiricalFisher, gradient: Tensor | None, k: int
) -> Tensor:
    """Warm-start mask over the alive weights (True = removed, exactly ``k``): the ``k``
    smallest |w̄| (magnitude) or the ``k`` lowest OBS saliencies on F restricted to the
    alive weights (obs), the local model the solver works on: earlier removals are held
    at zero, so their coordinates take no part in the saliency or its Newton point."""
    if name == "magnitude":
        return lowest_k_mask(w.abs(), k)
    return woodfisher_select(w, fisher, k, gradient=gradient)


register_preset("l0", "l0", "cbs_u")
