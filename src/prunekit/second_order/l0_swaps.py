"""Exact one-for-one swaps for the L0 solver: predict the change of the backsolved
objective when one kept weight i is removed and one removed weight j is freed.

At the backsolved point x (kept set R, removed set Q) the gradient ∇ = ḡ + F(x − w̄) is
zero on R. With M = F_RR⁻¹, u = M F_Rj and the Schur complement s_j = F_jj − F_jRu, the
inverse of F over R ∪ {j} has entries [·]_jj = 1/s_j, [·]_ij = −u_i/s_j,
[·]_ii = M_ii + u_i²/s_j. Freeing j and then fixing x_i = 0 is the single-weight
problem with a gradient (``obs_saliency``'s formula) on R ∪ {j}:

    Δ_ij = −∇_j²/(2 s_j) + (x_i + u_i ∇_j / s_j)² / (2 (M_ii + u_i²/s_j)).

Across blocks u_i = 0 and Δ_ij = x_i²/(2M_ii) − ∇_j²/(2s_j): the two moves add up.
Only the ``candidates`` cheapest kept weights (by x_i²/(2M_ii)) and the most promising
removed ones (by ∇_j²/(2F_jj), a lower bound of the gain ∇_j²/(2s_j)) are paired: a
round costs O(m·|R|·p + |R|²·p) per block in the explicit form (|R| ≤ m, diag(M) read
off); in the kernel form (|R| > m) O(m²·p + m·p²) through the m×m kernel, with M_ii
computed at the p candidates only; never d×d.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from prunekit.second_order.l0_inverse import ExplicitInverse, KernelInverse
from prunekit.second_order.l0_model import FactoredLocalModel


@dataclass
class SwapCandidate:
    """Swap kept weight ``keep_out`` (to be removed) with removed ``free`` (to be kept);
    ``predicted`` is the exact change of the backsolved objective."""

    keep_out: int
    free: int
    predicted: float


def improving_swaps(
    model: FactoredLocalModel,
    x: Tensor,
    gradient_at_x: Tensor,
    removed: Tensor,
    fixed_removed: Tensor,
    inverses: list[ExplicitInverse | KernelInverse],
    candidates: int,
) -> list[SwapCandidate]:
    """Disjoint swaps with a negative predicted change, best first (greedy: each weight
    in at most one pair). The first one's prediction is exact; later ones ignore the
    earlier ones' effect. ``x`` is the backsolved point for ``removed`` and ``inverses``
    its blocks' F_RR⁻¹ (from the backsolve); fixed-removed weights are never freed."""
    kept_idx = (~removed).nonzero().flatten()
    free_idx = (removed & ~fixed_removed).nonzero().flatten()
    if len(kept_idx) == 0 or len(free_idx) == 0:
        return []
    # diag(M): read off an explicit inverse; for a kernel (Woodbury) one, whose diagonal
    # costs O(m²|R|), the candidates are screened by the bound M_ii ≥ 1/(λ + F_ii) and
    # their exact M_ii computed below
    inverse_diagonal = 1.0 / model.fisher_diagonal
    for (s, _e), inverse in zip(model.blocks, inverses, strict=True):
        if inverse.explicit:
            inverse_diagonal[s + inverse.kept] = inverse.diagonal
    removal_cost = x[kept_idx] ** 2 / (2 * inverse_diagonal[kept_idx])
    screen = gradient_at_x[free_idx] ** 2 / (2 * model.fisher_diagonal[free_idx])
    outs = kept_idx[torch.sort(removal_cost, stable=True).indices[:candidates]]
    ins = free_idx[torch.sort(-screen, stable=True).indices[:candidates]]

    # u_j = M F_Rj (only its entries at the candidates i are kept) and s_j, per block
    coupling = x.new_zeros(len(outs), len(ins))
    schur = model.fisher_diagonal[ins].clone()  # s_j = F_jj where no block couples
    block_of_out = model.fisher.block_index(outs)
    block_of_in = model.fisher.block_index(ins)
    for b, ((s, e), inverse) in enumerate(zip(model.blocks, inverses, strict=True)):
        local_kept = inverse.kept
        position = torch.full((e - s,), -1, dtype=torch.long, device=x.device)
        position[local_kept] = torch.arange(len(local_kept), device=x.device)
        rows = (block_of_out == b).nonzero().flatten()
        if len(rows) and not inverse.explicit:
            inverse_diagonal[outs[rows]] = inverse.diagonal_at(position[outs[rows] - s])
        cols = (block_of_in == b).nonzero().flatten()
        if len(cols) == 0 or len(local_kept) == 0:
            continue
        u, schur[cols] = inverse.swap_coupling(position[outs[rows] - s], ins[cols] - s)
        if len(rows):
            coupling[rows[:, None], cols[None, :]] = u
    schur = torch.clamp(schur, min=model.damp)  # s_j ≥ λ exactly

    grad_j = gradient_at_x[ins][None, :]
    s_j = schur[None, :]
    x_i = x[outs][:, None]
    m_ii = inverse_diagonal[outs][:, None]
    gain = grad_j**2 / (2 * s_j)
    cost = (x_i + coupling * grad_j / s_j) ** 2 / (2 * (m_ii + coupling**2 / s_j))
    change = (cost - gain).flatten()
    order = torch.argsort(change)
    order = order[change[order] < 0].tolist()
    swaps, used_out, used_in = [], set(), set()
    for flat in order:
        row, col = divmod(flat, len(ins))
        if row in used_out or col in used_in:
            continue
        used_out.add(row)
        used_in.add(col)
        swaps.append(SwapCandidate(int(outs[row]), int(ins[col]), float(change[flat])))
    return swaps
