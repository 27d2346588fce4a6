"""CBS-U: the exact multi-weight OBS update for a given removal set Q.

Minimise ½ δwᵀFδw subject to w_Q + δw_Q = 0 (F = λI + GᵀG/m, block diagonal, so the
problem splits into one independent problem per block). Three equivalent routes:

- ``"removed"``: δw = −F⁻¹ E_Q [(F⁻¹)_QQ]⁻¹ w_Q, a |Q|×|Q| system on the inverse.
- ``"kept"``: with R the kept set, δw_R = F_RR⁻¹ F_RQ w_Q (from F_RR δw_R + F_RQ δw_Q = 0
  and δw_Q = −w_Q), F_RR = G_RᵀG_R/m + λI: an |R|×|R| system.
- ``"gram"``: the kept-set system through an m×m Cholesky. By the push-through
  identity (λI + G_RᵀG_R/m)⁻¹G_Rᵀ = m G_Rᵀ(mλI + G_RG_Rᵀ)⁻¹, and F_RQ w_Q = G_Rᵀh/m
  with h = G_Q w_Q, so δw_R = G_Rᵀ (mλI + G_RG_Rᵀ)⁻¹ h (no cancellation).

``"auto"`` picks, per block, the route with the fewest operations (``choose_solver``).
The predicted loss change is ½ w_Qᵀ[(F⁻¹)_QQ]⁻¹w_Q, computed as ½ δwᵀFδw (equal at the
optimum, and never negative).

With a mean gradient ḡ (local model ḡᵀδ + ½δᵀFδ, see ``local_model``) the same routes
solve min ḡᵀδ + ½δᵀFδ s.t. δ_Q = −w_Q:

- ``"removed"``: δ = −F⁻¹ḡ − F⁻¹E_Q [(F⁻¹)_QQ]⁻¹ (w_Q − (F⁻¹ḡ)_Q).
- ``"kept"``: δ_R = F_RR⁻¹ (F_RQ w_Q − ḡ_R).
- ``"gram"``: with F_RR⁻¹ = (1/λ)[I − G_Rᵀ K⁻¹ G_R], K = mλI + G_RG_Rᵀ,
  δ_R = G_Rᵀ K⁻¹ (h + G_R ḡ_R / λ) − ḡ_R / λ (one m×m Cholesky). When ḡ_R lies in the
  span of G_Rᵀ the two terms cancel in part: use float64 for a small λ.

A block with nothing removed still moves, by the Newton step −F_b⁻¹ḡ_b. The predicted
change ḡᵀδ + ½δᵀFδ = −½ḡᵀF⁻¹ḡ + ½ w̃_Qᵀ[(F⁻¹)_QQ]⁻¹w̃_Q (w̃ = w − F⁻¹ḡ) can be negative.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from prunekit.errors import ConfigError
from prunekit.second_order.fisher import (
    EmpiricalFisher,
    check_memory,
    cholesky_or_raise,
    column_gram,
    gather_columns,
    solve_with_cholesky,
)
from prunekit.second_order.local_model import check_gradient, local_change, solve_without_settled
from prunekit.second_order.obs import WeightUpdate, _check_mask

Solver = Literal["removed", "kept", "gram", "auto"]


def choose_solver(
    num_removed: int, num_kept: int, num_samples: int, factor_ready: bool = False
) -> str:
    """The route with the fewest floating-point operations for one block (|Q| removed,
    |R| kept, m gradients): ``kept`` forms G_RᵀG_R (m|R|²) and factors it (|R|³/3);
    ``gram`` forms G_RG_Rᵀ (m²|R|) and factors it (m³/3); ``removed`` needs the block's
    F⁻¹ factor (free when ``factor_ready``, else min(m, B)·m·B for B = |Q| + |R|), then
    m²|Q| + m|Q|² for (F⁻¹)_QQ and |Q|³/3. Ties prefer kept, then gram, then removed."""
    q, r, m = float(num_removed), float(num_kept), float(num_samples)
    size = q + r
    factor = 0.0 if factor_ready else min(m, size) * m * size + min(m, size) ** 3 / 3
    costs = {
        "kept": m * r * r + r**3 / 3,
        "gram": m * m * r + m**3 / 3,
        "removed": factor + m * min(m, size) * q + m * q * q + q**3 / 3,
    }
    return min(costs, key=lambda name: costs[name])


def cbs_update(
    w: Tensor,
    fisher: EmpiricalFisher,
    removed: Tensor,
    solver: Solver = "auto",
    gradient: Tensor | None = None,
) -> WeightUpdate:
    """Exact OBS update that removes the weights marked True in ``removed``.

    Returns the new weights (removed ones exactly zero), δw, and the predicted loss
    change ½ w_Qᵀ[(F⁻¹)_QQ]⁻¹w_Q. With a mean gradient ``gradient`` = ḡ, δw minimises
    ḡᵀδw + ½δwᵀFδw instead, and ``loss_change`` is that value."""
    if solver not in ("removed", "kept", "gram", "auto"):
        raise ConfigError(f"unknown solver {solver!r}: use removed, kept, gram or auto")
    removed = _check_mask(removed, fisher.dim).to(fisher.device)
    w = w.to(device=fisher.device, dtype=fisher.dtype)
    gradient = check_gradient(gradient, fisher)
    # an earlier stage's removals drop out: the systems are sized by the new ones
    delta = solve_without_settled(
        lambda w_, fisher_, removed_, gradient_: _solve_blocks(
            w_, fisher_, removed_, solver, gradient_
        ),
        w,
        fisher,
        removed,
        gradient,
    )
    weights = w + delta
    weights[removed] = 0.0
    return WeightUpdate(weights, delta, local_change(delta, fisher, gradient))


def _solve_blocks(
    w: Tensor,
    fisher: EmpiricalFisher,
    removed: Tensor,
    solver: Solver,
    gradient: Tensor | None,
) -> Tensor:
    """δw of the constrained problem, block by block (see the module docstring)."""
    delta = torch.zeros_like(w)
    m = fisher.num_samples
    item = w.element_size()
    for b, (start, end) in enumerate(fisher.blocks):
        local_removed = removed[start:end]
        q = local_removed.nonzero().flatten()
        r = (~local_removed).nonzero().flatten()
        if len(q) == 0:
            if gradient is not None:
                delta[start:end] = -fisher.block_inverse_matvec(b, gradient[start:end])
            continue
        w_q = w[start:end][q]
        route = (
            choose_solver(len(q), len(r), m, fisher.has_factor(b)) if solver == "auto" else solver
        )
        if len(r) == 0:
            route = "none"
        size = {"removed": len(q), "kept": len(r), "gram": m, "none": 0}[route]
        check_memory(
            2 * size * size * item,
            fisher.memory_limit,
            fisher.device,
            f"the CBS-U {route!r} system of block {b} ({size}×{size})",
            "use solver='auto', smaller blocks or fewer gradient samples",
        )
        block_delta = delta[start:end]
        block_delta[q] = -w_q
        if route == "removed":
            inverse_qq = fisher.block_inverse_submatrix(b, q, q)
            factor = cholesky_or_raise(inverse_qq, "(F⁻¹)_QQ")
            e_q = torch.zeros(end - start, dtype=w.dtype, device=w.device)
            if gradient is None:
                e_q[q] = solve_with_cholesky(w_q[:, None], factor)[:, 0]
                block_delta[r] = -fisher.block_inverse_matvec(b, e_q)[r]
            else:
                newton_step = fisher.block_inverse_matvec(b, gradient[start:end])
                target = (w_q - newton_step[q])[:, None]
                e_q[q] = solve_with_cholesky(target, factor)[:, 0]
                block_delta[r] = -(newton_step + fisher.block_inverse_matvec(b, e_q))[r]
        elif route in ("kept", "gram"):
            g = fisher.block_grads(b)
            w_removed = torch.zeros(end - start, dtype=w.dtype, device=w.device)
            w_removed[q] = w_q
            h = g @ w_removed  # G_Q w_Q without copying G_Q
            if route == "kept":
                g_r = gather_columns(g, r)
                system = column_gram(g_r.T).div_(m)  # G_RᵀG_R, lower half multiplied
                system.diagonal().add_(fisher.damp)
                rhs = g_r.T @ h / m
                if gradient is not None:
                    rhs = rhs - gradient[start:end][r]
                rhs = rhs[:, None]
                factor = cholesky_or_raise(system, "F_RR", overwrite=True)
                block_delta[r] = solve_with_cholesky(rhs, factor)[:, 0]
            else:
                kernel = column_gram(g, r)
                kernel.diagonal().add_(m * fisher.damp)
                # m×m: factored in place, no second copy (peak memory at large m)
                factor = cholesky_or_raise(kernel, "mλI + G_RG_Rᵀ", overwrite=True)
                del kernel
                if gradient is None:
                    solved = solve_with_cholesky(h[:, None], factor)[:, 0]
                    block_delta[r] = (g.T @ solved)[r]
                else:
                    scaled = torch.zeros_like(w_removed)
                    scaled[r] = gradient[start:end][r] / fisher.damp
                    rhs = (h + g @ scaled)[:, None]
                    solved = solve_with_cholesky(rhs, factor)[:, 0]
                    block_delta[r] = (g.T @ solved)[r] - scaled[r]
    return delta
