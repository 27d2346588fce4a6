"""The local model φ(w) = ḡᵀδ + ½δᵀFδ (δ = w − w̄) in the form the L0 solver needs:
values and gradients from products with G, and the exact backsolve on a kept set.

Holds Gᵀ as a contiguous d×m array (G itself when it is weight-major, else a copy),
so the gradient vectors of any set of weights are contiguous rows (gathering the
columns of G for a small support is slow); memory O(m·d), never d×d. Each block's
F_RR⁻¹ is kept from one backsolve to the next and updated for the weights that
changed (``l0_inverse``). Masks are bool, True = removed.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from prunekit.second_order.fisher import EmpiricalFisher
from prunekit.second_order.l0_inverse import (
    ExplicitInverse,
    KeptInverse,
    KernelInverse,
    kept_inverse,
)

__all__ = ["Backsolved", "FactoredLocalModel", "KeptInverse", "ExplicitInverse", "KernelInverse"]


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
        return [self._block_g_delta(b, x[s:e]) for b, (s, e) in enumerate(self.blocks)]

    def _block_g_delta(self, b: int, local: Tensor) -> Tensor:
        s, e = self.blocks[b]
        support = local.nonzero().flatten()
        if 2 * len(support) < e - s:
            gx = local[support] @ self.grads_t[s + support]
        else:
            gx = local @ self.grads_t[s:e]
        return gx - self.g_w_bar[b]

    def value(self, x: Tensor, gd: list[Tensor]) -> float:
        """φ(x) given gd = g_delta(x)."""
        delta = x - self.w_bar
        quadratic = self.damp * (delta @ delta) + sum(y @ y for y in gd) / self.m
        return float(self.gradient @ delta + 0.5 * quadratic)

    def grad(self, x: Tensor, gd: list[Tensor], known: list[Tensor | None] | None = None) -> Tensor:
        """∇φ(x) = ḡ + λδ + Gᵀ(Gδ)/m given gd = g_delta(x); ``known``: per block
        G_bᵀ(G_bδ_b)/m where computed already (a backsolve's, else None)."""
        known = known or [None] * len(self.blocks)
        products = torch.cat(
            [
                self.grads_t[s:e] @ y / self.m if done is None else done
                for (s, e), y, done in zip(self.blocks, gd, known, strict=True)
            ]
        )
        return self.gradient + self.damp * (x - self.w_bar) + products

    def backsolve(self, removed: Tensor) -> Backsolved:
        """The exact minimiser x of φ with x_Q = 0 for Q = ``removed`` (the kept-set route
        of ``cbs_update`` with a gradient): per block, with h = G_Q w̄_Q,
        x_R = w̄_R + F_RR⁻¹(G_Rᵀh/m − ḡ_R). Returns x, φ(x), each block's F_RR⁻¹
        (updated from the previous backsolve's when the kept set changed little) and
        G_b(x_b − w̄_b) per block (what ``grad`` and ``value`` take)."""
        x = torch.zeros_like(self.w_bar)
        inverses, g_delta, curvature = [], [], []
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
            w_block, gradient_block = self.w_bar[s:e], self.gradient[s:e]
            if len(kept) == 0:
                g_delta.append(-self.g_w_bar[b])
                curvature.append(None)
                continue
            if inverse.explicit:
                step, g_step = self._explicit_step(b, inverse)
                curvature.append(None)
            else:
                step, g_step, block_curvature = inverse.kept_newton(w_block, gradient_block)
                curvature.append(block_curvature)
            x[s + kept] = w_block[kept] + step
            g_delta.append(g_step)
        return Backsolved(x, self.value(x, g_delta), inverses, g_delta, curvature)

    def _explicit_step(self, b: int, inverse: ExplicitInverse) -> tuple[Tensor, Tensor]:
        """δ_R = M(G_Rᵀh/m − ḡ_R) and G_bδ_b = G_Rδ_R − h for an explicit M = F_RR⁻¹
        (|R| ≤ m), with h = G_Q w̄_Q = G w̄ − G_R w̄_R: where R is under half the block,
        through its rows of Gᵀ alone (one |R|×m gather, no pass over the block)."""
        s, e = self.blocks[b]
        kept = inverse.kept
        w_kept, gradient_kept = self.w_bar[s + kept], self.gradient[s + kept]
        if 2 * len(kept) < e - s:
            g_kept = self.grads_t[s + kept]  # (|R|, m)
            h = self.g_w_bar[b] - w_kept @ g_kept
            step = inverse.matmul(g_kept @ h / self.m - gradient_kept)
            return step, step @ g_kept - h
        grads_t = self.grads_t[s:e]
        local = torch.zeros_like(self.w_bar[s:e])
        local[kept] = w_kept
        h = self.g_w_bar[b] - local @ grads_t
        step = inverse.matmul((grads_t @ h)[kept] / self.m - gradient_kept)
        local[kept] = step
        return step, local @ grads_t - h


class Backsolved(NamedTuple):
    """A backsolve's result: the point ``x`` (removed weights 0), φ(x), each block's
    F_RR⁻¹, G_b(x_b − w̄_b) per block, and G_bᵀG_b(x_b − w̄_b)/m per block where the
    solve gave it for free (kernel form; else None): ``grad(x, g_delta, curvature)``."""

    x: Tensor
    objective: float
    inverses: list[ExplicitInverse | KernelInverse]
    g_delta: list[Tensor]
    curvature: list[Tensor | None]

    def gradient(self, model: FactoredLocalModel) -> Tensor:
        """∇φ at ``x``: zero on the kept weights up to rounding."""
        return model.grad(self.x, self.g_delta, self.curvature)
