"""The local model φ(w) = ḡᵀδ + ½δᵀFδ (δ = w − w̄) in the form the L0 solver needs:
values and gradients from products with G, and the exact backsolve on a kept set.

Holds Gᵀ as a contiguous d×m copy, so the gradient vectors of any set of weights are
contiguous rows (gathering the columns of G for a small support is slow); memory
O(m·d), never d×d. Masks are bool, True = removed.
"""

from __future__ import annotations

import torch
from torch import Tensor

from prunekit.second_order.fisher import EmpiricalFisher, cholesky_or_raise


class KeptInverse:
    """M = F_RR⁻¹ for the kept set R of one block (F_RR = λI + G_RᵀG_R/m): explicit
    when |R| ≤ m, else the Woodbury form M = (1/λ)[I − G_Rᵀ(mλI + G_RG_Rᵀ)⁻¹G_R]."""

    def __init__(self, g_kept: Tensor, damp: float) -> None:
        m, size = g_kept.shape
        self.g, self.damp, self.m = g_kept, damp, m
        self.explicit = size <= m
        self._diagonal: Tensor | None = None
        if size == 0:
            self._diagonal = g_kept.new_zeros(0)
        elif self.explicit:
            system = g_kept.T @ g_kept / m
            system.diagonal().add_(damp)
            self.inverse = torch.cholesky_inverse(cholesky_or_raise(system, "F_RR"))
        else:
            kernel = g_kept @ g_kept.T
            kernel.diagonal().add_(m * damp)
            self.factor = cholesky_or_raise(kernel, "mλI + G_RG_Rᵀ")

    @property
    def diagonal(self) -> Tensor:
        """diag(M), clamped below by its exact bound 1/(λ + F_ii) (rounding guard)."""
        if self._diagonal is None:
            if self.explicit:
                diagonal = self.inverse.diagonal().clone()
            else:
                z = torch.linalg.solve_triangular(self.factor, self.g, upper=False)
                diagonal = (1.0 - (z * z).sum(0)) / self.damp
            fisher_diagonal = torch.linalg.vector_norm(self.g, dim=0).square() / self.m
            self._diagonal = torch.clamp(diagonal, min=1.0 / (fisher_diagonal + self.damp))
        return self._diagonal

    def matmul(self, v: Tensor) -> Tensor:
        """M v for v of shape (|R|,) or (|R|, r)."""
        if v.shape[0] == 0:
            return v
        if self.explicit:
            return self.inverse @ v
        column = v.dim() == 1
        rhs = self.g @ (v[:, None] if column else v)
        correction = self.g.T @ torch.cholesky_solve(rhs, self.factor)
        out = ((v[:, None] if column else v) - correction) / self.damp
        return out[:, 0] if column else out


class FactoredLocalModel:
    """φ, ∇φ and the backsolve for weights w̄, a Fisher and a mean gradient ḡ (None: 0)."""

    def __init__(self, w_bar: Tensor, fisher: EmpiricalFisher, gradient: Tensor | None) -> None:
        self.fisher, self.w_bar = fisher, w_bar
        self.blocks, self.damp, self.m = fisher.blocks, fisher.damp, fisher.num_samples
        self.gradient = torch.zeros_like(w_bar) if gradient is None else gradient
        self.grads_t = fisher.grads.T.contiguous()  # row i = g_i, the gradients of weight i
        self.g_w_bar = [w_bar[s:e] @ self.grads_t[s:e] for s, e in self.blocks]
        self.fisher_diagonal = (
            torch.linalg.vector_norm(self.grads_t, dim=1).square() / self.m + self.damp
        )

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

    def backsolve(self, removed: Tensor) -> tuple[Tensor, float, list[KeptInverse]]:
        """The exact minimiser x of φ with x_Q = 0 for Q = ``removed`` (the kept-set route
        of ``cbs_update`` with a gradient): per block, with h = G_Q w̄_Q,
        x_R = w̄_R + F_RR⁻¹(G_Rᵀh/m − ḡ_R). Returns x, φ(x) and each block's F_RR⁻¹."""
        x = torch.zeros_like(self.w_bar)
        inverses = []
        for s, e in self.blocks:
            local_removed = removed[s:e]
            kept = s + (~local_removed).nonzero().flatten()
            g_kept = self.grads_t[kept].T
            inverse = KeptInverse(g_kept, self.damp)
            inverses.append(inverse)
            if len(kept) == 0:
                continue
            h = torch.where(local_removed, self.w_bar[s:e], 0.0) @ self.grads_t[s:e]
            rhs = g_kept.T @ h / self.m - self.gradient[kept]
            x[kept] = self.w_bar[kept] + inverse.matmul(rhs)
        return x, self.value(x, self.g_delta(x)), inverses
