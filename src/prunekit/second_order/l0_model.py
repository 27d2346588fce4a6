"""The local model φ(w) = ḡᵀδ + ½δᵀFδ (δ = w − w̄) in the form the L0 solver needs:
values and gradients from products with G, and the exact backsolve on a kept set.

Holds Gᵀ as a contiguous d×m array (G itself when it is weight-major, else a copy),
so the gradient vectors of any set of weights are contiguous rows (gathering the
columns of G for a small support is slow); memory O(m·d), never d×d. Each block's
F_RR⁻¹ is kept from one backsolve to the next and updated for the weights that
changed (``l0_inverse``). Masks are bool, True = removed.
"""

from __future__ import annotations

import torch
from torch import Tensor

from prunekit.second_order.fisher import EmpiricalFisher
from prunekit.second_order.l0_inverse import (
    ExplicitInverse,
    KeptInverse,
    KernelInverse,
    kept_inverse,
)

__all__ = ["FactoredLocalModel", "KeptInverse", "ExplicitInverse", "KernelInverse"]


class FactoredLocalModel:
    """φ, ∇φ and the backsolve for weights w̄, a Fisher and a mean gradient ḡ (None: 0)."""

    def __init__(
        self,
        w_bar: Tensor,
        fisher: EmpiricalFisher,
        gradient: Tensor | None,
        base_factors: dict[int, Tensor] | None = None,
    ) -> None:
        self.fisher, self.w_bar = fisher, w_bar
        self.blocks, self.damp, self.m = fisher.blocks, fisher.damp, fisher.num_samples
        self.gradient = torch.zeros_like(w_bar) if gradient is None else gradient
        self.grads_t = fisher.grads.T.contiguous()  # row i = g_i, the gradients of weight i
        self.g_w_bar = [w_bar[s:e] @ self.grads_t[s:e] for s, e in self.blocks]
        self.fisher_diagonal = (
            torch.linalg.vector_norm(self.grads_t, dim=1).square() / self.m + self.damp
        )
        # ``base_factors``: factors of whole blocks computed already (the Cholesky
        # factor of mλI + G_bG_bᵀ of a Woodbury block, the explicit F_b⁻¹ of another):
        # the first backsolves start from them instead of forming a Gram (the dict is
        # emptied: the factors are then freed as soon as they are replaced)
        self._inverses: dict[int, ExplicitInverse | KernelInverse] = {
            b: (
                KernelInverse.from_factor(fisher.block_grads(b), factor, self.damp)
                if fisher.methods[b] == "woodbury"
                else ExplicitInverse.from_inverse(fisher.block_grads(b), factor, self.damp)
            )
            for b, factor in (base_factors or {}).items()
        }
        if base_factors:
            base_factors.clear()

    def g_delta(self, x: Tensor) -> list[Tensor]:
        """G_b δ_b for δ = x − w̄, from the non-zero entries of x when it is sparse."""
        out = []
        for b, (s, e) in enumerate(self.blocks):
            local = x[s:e]
            support = local.nonzero().flatten()
            if 2 * len(support) < e - s:
                gx = local[support] @ self.grads_t[s + support]
            else:
                gx = local @ self.grads_t[s:e]
            out.append(gx - self.g_w_bar[b])
        return out

    def value(self, x: Tensor, gd: list[Tensor]) -> float:
        """φ(x) given gd = g_delta(x)."""
        delta = x - self.w_bar
        quadratic = self.damp * (delta @ delta) + sum(y @ y for y in gd) / self.m
        return float(self.gradient @ delta + 0.5 * quadratic)

    def grad(self, x: Tensor, gd: list[Tensor]) -> Tensor:
        """∇φ(x) = ḡ + λδ + Gᵀ(Gδ)/m given gd = g_delta(x)."""
        products = torch.cat(
            [self.grads_t[s:e] @ y for (s, e), y in zip(self.blocks, gd, strict=True)]
        )
        return self.gradient + self.damp * (x - self.w_bar) + products / self.m

    def backsolve(
        self, removed: Tensor
    ) -> tuple[Tensor, float, list[ExplicitInverse | KernelInverse]]:
        """The exact minimiser x of φ with x_Q = 0 for Q = ``removed`` (the kept-set route
        of ``cbs_update`` with a gradient): per block, with h = G_Q w̄_Q,
        x_R = w̄_R + F_RR⁻¹(G_Rᵀh/m − ḡ_R). Returns x, φ(x) and each block's F_RR⁻¹
        (updated from the previous backsolve's when the kept set changed little)."""
        x = torch.zeros_like(self.w_bar)
        inverses = []
        for b, (s, e) in enumerate(self.blocks):
            local_removed = removed[s:e]
            g_block = self.fisher.block_grads(b)
            previous = self._inverses.get(b)
            if isinstance(previous, KernelInverse) and previous.refactors(~local_removed):
                # nothing of it is reused: let it go before the new Gram is formed (an m×m
                # factor less at the peak where no caller still holds it; the same result)
                del self._inverses[b]
                previous = None
            inverse = kept_inverse(g_block, ~local_removed, self.damp, previous)
            self._inverses[b] = inverse
            inverses.append(inverse)
            kept = inverse.kept
            if len(kept) == 0:
                continue
            h = g_block @ torch.where(local_removed, self.w_bar[s:e], 0.0)
            rhs = (g_block.T @ h)[kept] / self.m - self.gradient[s + kept]
            x[s + kept] = self.w_bar[s + kept] + inverse.matmul(rhs)
        return x, self.value(x, self.g_delta(x)), inverses
