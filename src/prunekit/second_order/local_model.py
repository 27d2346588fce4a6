"""The local quadratic model of the loss at the current weights w̄.

    L(w̄ + δ) ≈ L(w̄) + ḡᵀδ + ½ δᵀFδ,   F = λI + GᵀG/m (``EmpiricalFisher``, λ included)

ḡ is the mean gradient (length d). ḡ = None means ḡ = 0, the OBS/CBS model at a
trained minimum. Completing the square, with the unconstrained (Newton) step
δ* = −F⁻¹ḡ and the Newton point w̃ = w̄ + δ*,

    ḡᵀδ + ½δᵀFδ = −½ḡᵀF⁻¹ḡ + ½(δ − δ*)ᵀF(δ − δ*),

so removing a set Q (δ_Q = −w̄_Q) with ḡ is the ḡ = 0 problem for ε = δ − δ* with
ε_Q = −w̃_Q: every OBS/CBS-U formula holds with w̃ in place of w̄, plus −½ḡᵀF⁻¹ḡ.
See docs/LOCAL_MODEL.md.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from prunekit.errors import ConfigError
from prunekit.second_order.fisher import EmpiricalFisher


def check_gradient(gradient: Tensor | None, fisher: EmpiricalFisher) -> Tensor | None:
    """ḡ as a length-d tensor in the Fisher's dtype and device (None stays None)."""
    if gradient is None:
        return None
    if gradient.shape != (fisher.dim,):
        raise ConfigError(
            f"gradient must be the mean gradient, a vector of length {fisher.dim}; "
            f"got shape {tuple(gradient.shape)}"
        )
    return gradient.to(device=fisher.device, dtype=fisher.dtype)


def mean_gradient(grads: Tensor) -> Tensor:
    """ḡ = (1/m) Σ_n g_n, the mean of the rows of G."""
    return grads.mean(0)


def newton_point(w: Tensor, fisher: EmpiricalFisher, gradient: Tensor | None) -> Tensor:
    """w̃ = w̄ − F⁻¹ḡ, the minimiser of the local model without any removal."""
    w = w.to(device=fisher.device, dtype=fisher.dtype)
    gradient = check_gradient(gradient, fisher)
    return w if gradient is None else w - fisher.inverse_matvec(gradient)


def local_change(delta: Tensor, fisher: EmpiricalFisher, gradient: Tensor | None) -> float:
    """Predicted loss change of the step δ: ḡᵀδ + ½δᵀFδ (½δᵀFδ when ḡ is None)."""
    quadratic = 0.5 * float(fisher.quadratic(delta))
    gradient = check_gradient(gradient, fisher)
    if gradient is None:
        return quadratic
    return float(torch.dot(gradient, delta.to(gradient.dtype))) + quadratic


def solve_without_settled(
    solve: Callable[[Tensor, EmpiricalFisher, Tensor, Tensor | None], Tensor],
    w: Tensor,
    fisher: EmpiricalFisher,
    removed: Tensor,
    gradient: Tensor | None,
) -> Tensor:
    """δ of ``solve(w, fisher, removed, gradient)`` with the *settled* weights (removed
    and already zero: an earlier stage's removals) dropped from the problem. They are
    held at δ = 0, which is the same as deleting their coordinates, so the solve runs
    on F restricted to the others (systems sized by the new removals and the kept
    weights, not by all d) and δ is zero on them."""
    settled = removed & (w == 0)
    if not bool(settled.any()) or bool(settled.all()):
        return solve(w, fisher, removed, gradient)
    active = ~settled
    delta = torch.zeros_like(w)
    delta[active] = solve(
        w[active],
        fisher.restricted(active),
        removed[active],
        None if gradient is None else gradient[active],
    )
    return delta
