"""What every update shares: the settings of how a correction is applied (its solver
route, its scale, a scale chosen on training loss) and the ``none`` update."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from prunekit.errors import ConfigError, PrunekitError
from prunekit.methods.oneshot.problem import OneShotProblem
from prunekit.methods.oneshot.registry import register_update
from prunekit.methods.oneshot.results import Update
from prunekit.second_order import WeightUpdate
from prunekit.utils.settings import setting


@dataclass
class UpdateSettings:
    """How an update's correction is applied (to any update: ``cbs_u``, ``woodfisher``).

    - ``solver``: the system CBS-U solves: ``removed`` (|Q|×|Q| on F⁻¹), ``kept``
      (|R|×|R| on F_RR), ``gram`` (m×m, through the gradients), or ``auto`` (the fewest
      operations, counting the F⁻¹ factor when it is not computed yet).
    - ``scale``: the kept weights' correction is multiplied by this (the official CBS
      code's ``--scale-prune-update``; 1.0 is the plain update). Removed weights are
      exactly zero whatever the scale.
    - ``scale_grid``: when non-empty, the scale is chosen among these values by the real
      loss on training data: lowest loss, earliest on ties; ``scale`` is then unused.
    """

    solver: str = setting(
        "auto",
        "CBS-U system: removed, kept, gram (m×m) or auto (the fewest operations)",
        choices=["auto", "removed", "kept", "gram"],
    )
    scale: float = setting(
        1.0, "multiply the update's correction of the kept weights by this (1: the full update)"
    )
    scale_grid: list[float] = setting(
        [], "choose the update scale among these by the real training loss (empty: scale)"
    )

    def __post_init__(self) -> None:
        if self.solver not in ("auto", "removed", "kept", "gram"):
            raise ConfigError(
                f"update solver must be auto, removed, kept or gram, got {self.solver!r}"
            )
        self.scale_grid = [float(a) for a in self.scale_grid]
        scales = (float(self.scale), *self.scale_grid)
        if not all(math.isfinite(a) for a in scales):
            raise ConfigError("update scales must be finite numbers")
        if min(scales) < 0:
            raise ConfigError(
                f"update scales must be >= 0 (1: the full update, 0: none), got "
                f"{min(scales):g}: a negative scale moves the kept weights against the "
                "correction"
            )


def apply_correction(
    problem: OneShotProblem,
    removed: Tensor,
    correction: Tensor,
    loss_change: Callable[[Tensor], float],
    settings: UpdateSettings,
) -> Update:
    """w̄ + a·correction with the removed weights exactly zero, a = ``settings.scale`` or
    the scale of ``settings.scale_grid`` with the lowest training loss.
    ``loss_change(change)`` is the local model's predicted change for a weight change."""
    w = problem.weights
    keep = ~removed.to(w.device)
    correction = correction.to(device=w.device, dtype=w.dtype)

    def weights_at(scale: float) -> Tensor:
        return (w + scale * correction) * keep

    scale, losses = settings.scale, None
    if settings.scale_grid:
        training_loss = problem.require_training_loss("a scale_grid")
        values = [float(training_loss(weights_at(a))) for a in settings.scale_grid]
        best = min(range(len(values)), key=lambda i: (values[i], i))
        scale = settings.scale_grid[best]
        losses = dict(zip(settings.scale_grid, values, strict=True))
    new_w = weights_at(scale)
    return Update(new_w, float(loss_change(new_w - w)), scale, losses)


def second_order_update(
    problem: OneShotProblem,
    removed: Tensor,
    settings: UpdateSettings,
    solve: Callable[..., WeightUpdate],
    method: str,
) -> Update:
    """Run a second-order ``solve(w, fisher, removed, gradient=ḡ) -> WeightUpdate`` in
    the Fisher's dtype and device (ḡ: the problem's mean gradient, or None), then apply
    its correction with ``settings``' scale rule."""
    if problem.fisher_covers_alive_only:
        # earlier removals are zero and held there: solve on the alive coordinates
        local = problem.alive_model(f"the {method} update")
        alive = local.alive
        solved = solve(
            local.weights, local.fisher, removed.to(alive.device)[alive], gradient=local.gradient
        )
        correction = torch.zeros(problem.dim, dtype=problem.weights.dtype)
        correction[alive.cpu()] = solved.delta.to(problem.weights.dtype).cpu()
    else:
        fisher = problem.require_fisher(f"the {method} update")
        gradient = None if problem.gradient is None else problem.gradient.to(fisher.grads)
        solved = solve(
            problem.weights.to(fisher.dtype), fisher, removed.to(fisher.device), gradient=gradient
        )
        correction = solved.delta.to(problem.weights.dtype).cpu()
    return apply_correction(
        problem,
        removed,
        correction,
        lambda change: local_model_change(problem, change),
        settings,
    )


@register_update("none")
def no_update(problem: OneShotProblem, removed: Tensor, settings: None) -> Update:
    """No update: the removed weights are set to zero, the others kept as they are."""
    return Update(problem.weights * ~removed.to(problem.weights.device))


def local_model_change(problem: OneShotProblem, change: Tensor) -> float:
    """The local model's predicted loss change of a weight change δ: ½ δᵀFδ, plus ḡᵀδ
    when the problem has a mean gradient ḡ (a first-order local model). With a Fisher
    of the alive weights only, δ must be zero on the earlier removals."""
    fisher = problem.require_fisher("the predicted loss change")
    delta = change.to(device=fisher.device, dtype=fisher.dtype)
    if problem.fisher_covers_alive_only:
        alive = problem.alive.to(fisher.device)
        if bool(delta[~alive].any()):
            raise PrunekitError(
                "internal error: a weight change moves earlier removals, which the "
                "Fisher of the alive weights does not cover"
            )
        delta = delta[alive]
    value = 0.5 * float(fisher.quadratic(delta))
    if problem.gradient is not None:
        value += float(problem.gradient.to(delta) @ delta)
    return value
