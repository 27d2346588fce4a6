"""M = F_RR⁻¹ for a kept set R of one Fisher block (F_RR = λI + G_RᵀG_R/m), kept up to
date while R changes a little at a time (the L0 solver's backsolves and swaps).

Two forms, whichever system is smaller:

- explicit (|R| ≤ m): the |R|×|R| matrix M itself. When weights D leave R and weights A
  join it, M is updated exactly instead of rebuilt: dropping D is the Schur complement
  M_{R'R'} − M_{R'D}(M_DD)⁻¹M_{DR'} (= F_{R'R'}⁻¹); adding A borders it with
  B = M F_{RA} and S = F_AA − F_{AR}B: [[M + BS⁻¹Bᵀ, −BS⁻¹], [−S⁻¹Bᵀ, S⁻¹]].
  O(|R|²·(|D| + |A|)) against O(m·|R|²) for a rebuild.
- kernel (|R| > m): Woodbury, M = (1/λ)[I − G_Rᵀ K⁻¹ G_R] with K = mλI + G_RG_Rᵀ (m×m).
  K of a base set is factored once; a later set that differs by the columns A (joined)
  and D (left) has K = K_base + W diag(±1) Wᵀ, W = [G_A, G_D], solved by Woodbury on
  the base factor (O(m²·r) once, r = |A| + |D|, then O(m² + m·r) per solve) until r
  grows past ``max_rank``, when the base is refactored: its kernel by downdating the
  last one (K_base + G_AG_Aᵀ − G_DG_Dᵀ, O(m²·r)) where that Gram is kept (m ≤ d/8, so
  it is small next to G) and r < |R|/2, else a new Gram (O(m²·|R|)). G_R is never copied: products
  with G_R go through the block's G with zeros off R. The diagonal of M is computed only
  where asked (``diagonal_at``): all of it would cost O(m²·|R|).

Indices are block-local; ``kept`` gives the order of M's rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from prunekit.second_order.fisher import (
    cholesky_or_raise,
    column_gram,
    gather_columns,
    solve_with_cholesky,
)

EXPLICIT_REBUILD_EVERY = 32  # exact updates between two rebuilds (rounding drift)
MAX_DOWNDATES = 8  # kernels formed by downdating the last one before a fresh Gram
SUMS_REFRESH_EVERY = 32  # column-sum updates (``KernelInverse._column_sums``) between full ones


class ExplicitInverse:
    """M = F_RR⁻¹ as an |R|×|R| matrix, rows in the order of ``kept``.

    A swap (as many weights join R as leave it) is applied in place: the update takes
    this object's matrix over and this object becomes ``stale`` (unusable)."""

    explicit = True
    stale = False

    def __init__(self, g_block: Tensor, kept: Tensor, damp: float) -> None:
        self.g, self.damp, self.m = g_block, damp, g_block.shape[0]
        self.kept = kept
        self.updates = 0
        if len(kept) == 0:
            self.inverse = g_block.new_zeros(0, 0)
            return
        g_r = gather_columns(g_block, kept)
        system = column_gram(g_r.T).div_(self.m)  # G_RᵀG_R, lower half multiplied
        del g_r
        system.diagonal().add_(damp)
        self.inverse = torch.cholesky_inverse(cholesky_or_raise(system, "F_RR", overwrite=True))

    @classmethod
    def from_inverse(cls, g_block: Tensor, inverse: Tensor, damp: float) -> ExplicitInverse:
        """The inverse for every column of ``g_block`` kept, from ``inverse`` = F_b⁻¹
        computed elsewhere (the Fisher's own explicit inverse): no Gram is formed."""
        out = cls.__new__(cls)
        out.g, out.damp, out.m = g_block, damp, g_block.shape[0]
        out.kept = torch.arange(g_block.shape[1], device=g_block.device)
        out.inverse, out.updates = inverse, 0
        return out

    def updated(self, kept_mask: Tensor) -> ExplicitInverse:
        """The inverse for the kept set ``kept_mask`` (bool over the block)."""
        old = torch.zeros_like(kept_mask)
        old[self.kept] = True
        stays = kept_mask[self.kept]
        joins = (kept_mask & ~old).nonzero().flatten()
        changes = int((~stays).sum()) + len(joins)
        if changes == 0:
            return self
        new_size = int(kept_mask.sum())
        if (
            self.updates >= EXPLICIT_REBUILD_EVERY
            or new_size == 0
            or 2 * changes > max(new_size, 1)
            or new_size > self.m
        ):
            return ExplicitInverse(self.g, kept_mask.nonzero().flatten(), self.damp)
        if len(joins) == changes - len(joins):
            return self._swapped((~stays).nonzero().flatten(), joins)
        inverse, kept = self._matrix(), self.kept
        # (each step below makes as few |R|×|R| copies as it can: at |R| ≈ m = 10,000
        # one is 0.37 GiB, and copying dominated the update)
        if not bool(stays.all()):
            keep = stays.nonzero().flatten()
            drop = (~stays).nonzero().flatten()
            m_kd = inverse[keep[:, None], drop]
            m_dd = inverse[drop[:, None], drop]
            # the Schur complement written into the one gathered copy (no |R|×|R|
            # temporary); rounding asymmetry is left to the periodic rebuild
            inverse = inverse[keep[:, None], keep]
            inverse.addmm_(m_kd, torch.linalg.solve(m_dd, m_kd.T), alpha=-1.0)
            kept = kept[keep]
        if len(joins):
            g_r, g_a = gather_columns(self.g, kept), gather_columns(self.g, joins)
            f_ra = g_r.T @ g_a / self.m
            del g_r
            f_aa = g_a.T @ g_a / self.m
            f_aa.diagonal().add_(self.damp)
            b = inverse @ f_ra
            schur = f_aa - f_ra.T @ b
            schur_inverse = torch.cholesky_inverse(cholesky_or_raise(schur, "S_AA"))
            bs = b @ schur_inverse
            # [[M + BS⁻¹Bᵀ, −BS⁻¹], [−S⁻¹Bᵀ, S⁻¹]], written into one array
            size, joined = len(kept), len(joins)
            bordered = inverse.new_empty(size + joined, size + joined)
            torch.addmm(inverse, bs, b.T, out=bordered[:size, :size])
            torch.neg(bs, out=bordered[:size, size:])
            bordered[size:, :size] = bordered[:size, size:].T
            bordered[size:, size:] = schur_inverse
            inverse = bordered
            kept = torch.cat([kept, joins])
        out = ExplicitInverse.__new__(ExplicitInverse)
        out.g, out.damp, out.m = self.g, self.damp, self.m
        out.kept, out.inverse, out.updates = kept, inverse, self.updates + 1
        return out

    def _swapped(self, drop: Tensor, joins: Tensor) -> ExplicitInverse:
        """The inverse with the weights at positions ``drop`` replaced by ``joins`` (as
        many), written into this object's matrix (which it takes over): the Schur
        complement M − M_{·D}(M_DD)⁻¹M_{D·} zeroes D's rows and columns; the joined
        weights then take D's positions, bordered as in ``updated`` (B = M F_RA has
        zeros there, so M + BS⁻¹Bᵀ leaves them zero before −BS⁻¹ and S⁻¹ are written).
        Two rank-|D| products on M and no |R|×|R| copy."""
        inverse = self._matrix()
        self.inverse, self.stale = None, True
        m_d = inverse[:, drop]
        inverse.addmm_(m_d, torch.linalg.solve(m_d[drop], m_d.T), alpha=-1.0)
        inverse[:, drop] = 0.0
        inverse[drop, :] = 0.0
        kept = self.kept.clone()
        kept[drop] = joins
        out = ExplicitInverse.__new__(ExplicitInverse)
        out.g, out.damp, out.m = self.g, self.damp, self.m
        out.kept, out.inverse, out.updates = kept, inverse, self.updates + 1
        f_ra = out.cross(joins)  # rows at D hold F_AA: multiplied by zeros of M
        g_a = gather_columns(self.g, joins)
        f_aa = g_a.T @ g_a / self.m
        f_aa.diagonal().add_(self.damp)
        b = inverse @ f_ra
        schur_inverse = torch.cholesky_inverse(cholesky_or_raise(f_aa - f_ra.T @ b, "S_AA"))
        bs = b @ schur_inverse
        inverse.addmm_(bs, b.T)
        inverse[:, drop] = -bs
        inverse[drop, :] = -bs.T
        inverse[drop[:, None], drop] = schur_inverse
        return out

    def _matrix(self) -> Tensor:
        if self.stale:
            raise RuntimeError(
                "this F_RR⁻¹ was updated in place into a later one (a swap); use that one"
            )
        return self.inverse

    def matmul(self, v: Tensor) -> Tensor:
        """M v for v of shape (|R|,) or (|R|, c), in the order of ``kept``."""
        return v if v.shape[0] == 0 else self._matrix() @ v

    def cross(self, columns: Tensor) -> Tensor:
        """F_{R,J} = G_RᵀG_J/m for block-local columns J, rows in the order of ``kept``
        (through the whole block's G when R is most of it: one read of G, no copy)."""
        g_j = gather_columns(self.g, columns)
        if 2 * len(self.kept) > self.g.shape[1]:
            return (self.g.T @ g_j)[self.kept] / self.m
        return gather_columns(self.g, self.kept).T @ g_j / self.m

    def diagonal_at(self, positions: Tensor, cache: bool = True) -> Tensor:
        """M_ii at positions (in the order of ``kept``; ``cache`` is the kernel form's)."""
        return self._matrix().diagonal()[positions]

    def swap_coupling(self, positions: Tensor, columns: Tensor) -> tuple[Tensor, Tensor]:
        """For block-local columns j outside R: u = M F_Rj at the kept ``positions``
        (len(positions) × c) and the Schur complements s_j = F_jj − F_jR M F_Rj (c,)."""
        f_rj = self.cross(columns)
        u = self.matmul(f_rj)
        f_jj = gather_columns(self.g, columns).square().sum(0) / self.m + self.damp
        return u[positions], f_jj - (f_rj * u).sum(0)

    @property
    def diagonal(self) -> Tensor:
        return self._matrix().diagonal().clone()


class KernelInverse:
    """M = F_RR⁻¹ in Woodbury form on a factored m×m kernel (see the module docstring)."""

    explicit = False
    stale = False  # never updated in place

    def __init__(self, g_block: Tensor, kept_mask: Tensor, damp: float, max_rank: int) -> None:
        self.g, self.damp, self.m, self.max_rank = g_block, damp, g_block.shape[0], max_rank
        self._set_base(kept_mask)

    @classmethod
    def from_factor(cls, g_block: Tensor, factor: Tensor, damp: float) -> KernelInverse:
        """The inverse for every column of ``g_block`` kept, from ``factor``, the lower
        Cholesky factor of mλI + GGᵀ computed elsewhere (the Fisher's own Woodbury
        factor): no Gram is formed, and none is kept."""
        out = cls.__new__(cls)
        out.g, out.damp, out.m = g_block, damp, g_block.shape[0]
        out.max_rank = kernel_max_rank(out.m)
        every = torch.ones(g_block.shape[1], dtype=torch.bool, device=g_block.device)
        out.base_mask, out.factor, out.base_kernel, out.downdates = every, factor, None, 0
        out.solves = FactorSolves(factor, g_block.shape[1], 2 * out.max_rank)
        out._set_mask(every, None)
        return out

    def _set_base(
        self, kept_mask: Tensor, kernel: Tensor | None = None, downdates: int = 0
    ) -> None:
        """Factor the kernel of ``kept_mask`` (``kernel``: already formed by a
        downdate). The kernel is kept for later downdates only where it is small next
        to G (``keeps_gram``): at m = 10,000 on MLPNet each m×m matrix is 0.37 GiB."""
        if kernel is None:
            kernel = column_gram(self.g, kept_mask.nonzero().flatten())
            kernel.diagonal().add_(self.m * self.damp)
            downdates = 0
        self.base_mask = kept_mask
        keep = keeps_gram(self.g)
        self.factor = cholesky_or_raise(kernel, "mλI + G_RG_Rᵀ", overwrite=not keep)
        self.base_kernel = kernel if keep else None
        self.downdates = downdates
        del kernel
        self.solves = FactorSolves(self.factor, self.g.shape[1], 2 * self.max_rank)
        self._set_mask(kept_mask, None)

    def _downdated_kernel(self, joins: Tensor, leaves: Tensor, chunk: int = 4096) -> Tensor:
        """K_base + G_A G_Aᵀ − G_D G_Dᵀ (O(m²·r), against O(m²·|R|) for a new Gram)."""
        kernel = self.base_kernel.clone()
        for columns, sign in ((joins, 1.0), (leaves, -1.0)):
            for lo in range(0, len(columns), chunk):
                piece = gather_columns(self.g, columns[lo : lo + chunk])
                kernel.addmm_(piece, piece.T, alpha=sign)
        return kernel

    def _set_mask(self, kept_mask: Tensor, correction) -> None:
        self.kept_mask = kept_mask
        self.kept = kept_mask.nonzero().flatten()
        self.correction = correction  # WoodburyCorrection or None

    def _can_downdate(self, rank: int, kept_mask: Tensor) -> bool:
        return (
            self.base_kernel is not None
            and 2 * rank < int(kept_mask.sum())
            and self.downdates < MAX_DOWNDATES
        )

    def refactors(self, kept_mask: Tensor) -> bool:
        """Whether :meth:`updated` would form a fresh Gram for ``kept_mask`` (nothing of
        this inverse reused: a caller holding no other reference may free it first)."""
        if torch.equal(kept_mask, self.kept_mask):
            return False
        rank = int((kept_mask ^ self.base_mask).sum())
        return rank > self.max_rank and not self._can_downdate(rank, kept_mask)

    def updated(self, kept_mask: Tensor) -> KernelInverse:
        """The inverse for the kept set ``kept_mask`` (bool over the block)."""
        if torch.equal(kept_mask, self.kept_mask):
            return self
        joins = (kept_mask & ~self.base_mask).nonzero().flatten()
        leaves = (self.base_mask & ~kept_mask).nonzero().flatten()
        rank = len(joins) + len(leaves)
        out = KernelInverse.__new__(KernelInverse)
        out.g, out.damp, out.m, out.max_rank = self.g, self.damp, self.m, self.max_rank
        out._sums = getattr(self, "_sums", None)  # h and G_Rḡ_R of a nearby kept set
        if rank > self.max_rank:
            if self._can_downdate(rank, kept_mask):
                kernel = self._downdated_kernel(joins, leaves)
                out._set_base(kept_mask, kernel, self.downdates + 1)
            else:
                out._set_base(kept_mask)
            return out
        out.base_mask, out.factor = self.base_mask, self.factor
        out.base_kernel, out.downdates = self.base_kernel, self.downdates
        out.solves = self.solves
        correction = None
        if rank:
            columns = torch.cat([joins, leaves])
            w = gather_columns(self.g, columns)
            signs = torch.cat([w.new_ones(len(joins)), -w.new_ones(len(leaves))])
            z = self.solves.columns(self.g, columns)
            products = self._capacitance_products(columns, w, z)
            capacitance = products + torch.diag(signs)
            correction = WoodburyCorrection(
                columns, w, z, products, torch.linalg.lu_factor(capacitance)
            )
        out._set_mask(kept_mask, correction)
        return out

    def _capacitance_products(self, columns: Tensor, w: Tensor, z: Tensor) -> Tensor:
        """WᵀZ = WᵀK_base⁻¹W for the correction's ``columns`` (symmetric): the entries
        between columns of this inverse's own correction are copied from it (a swap
        changes a few columns of a correction of up to m/4), only the new columns' rows
        are multiplied: O(m·r·c) for c new columns instead of O(m·r²)."""
        old = self.correction
        if old is None:
            return w.T @ z
        where = torch.full((self.g.shape[1],), -1, dtype=torch.long, device=w.device)
        where[old.columns] = torch.arange(len(old.columns), device=w.device)
        position = where[columns]
        common = (position >= 0).nonzero().flatten()
        fresh = (position < 0).nonzero().flatten()
        products = w.new_empty(len(columns), len(columns))
        products[common[:, None], common] = old.products[
            position[common][:, None], position[common]
        ]
        if len(fresh):
            new_rows = z[:, fresh].T @ w  # (c, r)
            products[fresh] = new_rows
            products[:, fresh] = new_rows.T
        return products

    def solve(self, b: Tensor) -> Tensor:
        """K⁻¹ b for the current kept set (b: (m,) or (m, c))."""
        column = b.dim() == 1
        rhs = b[:, None] if column else b
        y = solve_with_cholesky(rhs, self.factor)
        if self.correction is not None:
            w, z, lu = self.correction.w, self.correction.z, self.correction.lu
            y = y - z @ torch.linalg.lu_solve(*lu, w.T @ y)
        return y[:, 0] if column else y

    def solve_columns(self, columns: Tensor) -> Tensor:
        """K⁻¹ G[:, columns] for block-local ``columns`` (K_base⁻¹ g_j cached per base)."""
        pinned = None if self.correction is None else self.correction.columns
        z = self.solves.columns(self.g, columns, pinned)
        if self.correction is not None:
            w, z_w, lu = self.correction.w, self.correction.z, self.correction.lu
            z = z - z_w @ torch.linalg.lu_solve(*lu, w.T @ z)
        return z

    def swap_coupling(self, positions: Tensor, columns: Tensor) -> tuple[Tensor, Tensor]:
        """For block-local columns j outside R: u = M F_Rj at the kept ``positions`` and
        s_j = F_jj − F_jR M F_Rj, through the m×m kernel only (push-through:
        M G_Rᵀ = m G_Rᵀ K⁻¹, so u = G_Rᵀ K⁻¹ g_j and s_j = λ(1 + g_jᵀ K⁻¹ g_j)):
        O(m²·c + m·c·len(positions)), no product with the whole G_R."""
        z = self.solve_columns(columns)
        quadratic = (gather_columns(self.g, columns) * z).sum(0)
        return gather_columns(self.g, self.kept[positions]).T @ z, self.damp * (1.0 + quadratic)

    def _g_r(self, v: Tensor) -> Tensor:
        """G_R v for v over R (order of ``kept``), through the block's G."""
        full = v.new_zeros((self.g.shape[1],) + tuple(v.shape[1:]))
        full[self.kept] = v
        return self.g @ full

    def matmul(self, v: Tensor) -> Tensor:
        """M v for v of shape (|R|,) or (|R|, c), in the order of ``kept``."""
        if v.shape[0] == 0:
            return v
        y = self.solve(self._g_r(v))
        return (v - (self.g.T @ y)[self.kept]) / self.damp

    def kept_newton(self, weights: Tensor, gradient: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The backsolve's step on R and its images, for w̄ = ``weights`` and ḡ =
        ``gradient`` over the block: δ_R = M(G_Rᵀh/m − ḡ_R) with h = G_Q w̄_Q,
        Gδ = G_Rδ_R − h and GᵀGδ/m over the whole block.

        With t = K⁻¹(λh + G_Rḡ_R): δ_R = (G_Rᵀt − ḡ_R)/λ, Gδ = −m·t and GᵀGδ/m = −Gᵀt,
        because G_R(G_Rᵀh/m − ḡ_R) = (K − mλI)h/m − G_Rḡ_R. h and G_Rḡ_R come from the
        inverse this one was updated from (``_column_sums``), one read of Gᵀ gives Gᵀt,
        and there is one solve with K. The same algebra through ``matmul``, a product
        for Gδ and one for GᵀGδ reads G six times."""
        both = self._column_sums(weights, gradient)  # (m, 2): h and G_Rḡ_R
        t = self.solve(self.damp * both[:, 0] + both[:, 1])
        g_t = self.g.T @ t
        step = (g_t[self.kept] - gradient[self.kept]) / self.damp
        return step, -self.m * t, g_t.neg_()

    def _column_sums(self, weights: Tensor, gradient: Tensor) -> Tensor:
        """[G_Q w̄_Q, G_R ḡ_R] (m × 2). From the sums of the kept set this inverse was
        updated from, where few columns changed: each one that left R adds g_j w̄_j to
        h and takes g_j ḡ_j from G_Rḡ_R (and the reverse for one that joined), O(m) per
        column instead of a read of G; refreshed by a full product every
        ``SUMS_REFRESH_EVERY`` such steps (rounding)."""
        known = getattr(self, "_sums", None)
        if known is not None:
            mask, sums, steps = known
            if torch.equal(mask, self.kept_mask):
                return sums
            changed = (mask ^ self.kept_mask).nonzero().flatten()
            if steps < SUMS_REFRESH_EVERY and 8 * len(changed) <= self.g.shape[1]:
                left = mask[changed].to(weights.dtype) * 2.0 - 1.0  # +1 left R, −1 joined
                pieces = torch.stack([left * weights[changed], -left * gradient[changed]], 1)
                sums = sums + gather_columns(self.g, changed) @ pieces
                self._sums = (self.kept_mask, sums, steps + 1)
                return sums
        removed_weights = torch.where(self.kept_mask, 0.0, weights)
        kept_gradient = torch.where(self.kept_mask, gradient, 0.0)
        sums = self.g @ torch.stack([removed_weights, kept_gradient], dim=1)
        self._sums = (self.kept_mask, sums, 0)
        return sums

    def cross(self, columns: Tensor) -> Tensor:
        """F_{R,J} = G_RᵀG_J/m for block-local columns J, rows in the order of ``kept``."""
        return (self.g.T @ gather_columns(self.g, columns))[self.kept] / self.m

    def diagonal_at(self, positions: Tensor, cache: bool = True) -> Tensor:
        """M_ii at positions (in the order of ``kept``), clamped below by the exact bound
        1/(λ + F_ii) (rounding guard). ``cache``: keep K_base⁻¹ g_i of these columns
        (the swap candidates change little from round to round)."""
        columns = self.kept[positions]
        cols = gather_columns(self.g, columns)
        if cols.shape[1] == 0:
            return cols.new_zeros(0)
        solved = self.solve_columns(columns) if cache else self.solve(cols)
        quadratic = (cols * solved).sum(0)
        bound = 1.0 / (cols.square().sum(0) / self.m + self.damp)
        return torch.clamp((1.0 - quadratic) / self.damp, min=bound)

    @property
    def diagonal(self) -> Tensor:
        """All of diag(M) (O(m²·|R|): for tests and small blocks)."""
        out = []
        for lo in range(0, len(self.kept), 4096):
            positions = torch.arange(lo, min(lo + 4096, len(self.kept)), device=self.g.device)
            out.append(self.diagonal_at(positions, cache=False))
        return torch.cat(out) if out else self.g.new_zeros(0)


@dataclass
class WoodburyCorrection:
    """K = K_base + W diag(±1) Wᵀ: the changed ``columns`` (joined, then left), W = G of
    them, Z = K_base⁻¹W, ``products`` = WᵀZ and the LU factors of diag(±1) + WᵀZ."""

    columns: Tensor
    w: Tensor
    z: Tensor
    products: Tensor
    lu: tuple[Tensor, Tensor]


class FactorSolves:
    """K_base⁻¹ g_j for columns j of a block, each computed once while the base factor
    lasts (a swap changes two columns of the Woodbury correction: only those are solved,
    O(m²) each, not all r of them again). Holds at most ``capacity`` columns, filled in
    place in an array that doubles when full (growing it by concatenation copied it
    whole at every solve: up to 2 × 164 MiB at m = 10,000). When it is full, the solves
    asked for and the ``pinned`` ones (the correction's columns) are moved to the front
    and the rest dropped: swap candidates come and go, the correction's r columns stay
    (dropping them cost a re-solve of all r, O(m²·r), every few swap rounds)."""

    def __init__(self, factor: Tensor, columns: int, capacity: int) -> None:
        self.factor, self.capacity = factor, capacity
        self.where = torch.full((columns,), -1, dtype=torch.long, device=factor.device)
        self.store: Tensor | None = None  # (m, capacity), column-major rows of solves
        self.used = 0

    def columns(self, g: Tensor, indices: Tensor, pinned: Tensor | None = None) -> Tensor:
        """K_base⁻¹ G[:, indices] (m × len(indices))."""
        missing = indices[self.where[indices] < 0]
        if len(missing):
            if self.used + len(missing) > self.capacity:
                self._compact(indices if pinned is None else torch.cat([indices, pinned]))
            if self.used + len(missing) > self.capacity:
                self.where.fill_(-1)
                self.used = 0
                missing = indices
            new = solve_with_cholesky(gather_columns(g, missing), self.factor)
            if len(missing) > self.capacity:  # more than the store holds: not kept
                return new
            start = self.used
            size = 0 if self.store is None else self.store.shape[1]
            if start + len(missing) > size:
                grown = min(self.capacity, max(2 * size, 2 * (start + len(missing)), 256))
                store = new.new_empty(grown, new.shape[0]).T  # column-major, like ``new``
                if start:
                    store[:, :start] = self.store[:, :start]
                self.store = store
            self.store[:, start : start + len(missing)] = new
            self.where[missing] = torch.arange(start, start + len(missing), device=g.device)
            self.used += len(missing)
        return self.store[:, self.where[indices]]

    def _compact(self, keep: Tensor) -> None:
        """Keep only the stored solves of the columns ``keep``, at the front."""
        keep = torch.unique(keep[self.where[keep] >= 0])
        if len(keep) == self.used:
            return
        slots = self.where[keep]
        self.store[:, : len(keep)] = self.store[:, slots]  # gathered first, then written
        self.where.fill_(-1)
        self.where[keep] = torch.arange(len(keep), device=keep.device)
        self.used = len(keep)


def kept_inverse(
    g_block: Tensor,
    kept_mask: Tensor,
    damp: float,
    previous: ExplicitInverse | KernelInverse | None = None,
) -> ExplicitInverse | KernelInverse:
    """F_RR⁻¹ for R = ``kept_mask`` (bool over the block's columns of ``g_block``), from
    ``previous`` (the inverse of a nearby kept set) when it helps."""
    m = g_block.shape[0]
    size = int(kept_mask.sum())
    explicit = size <= m
    if previous is not None and previous.explicit == explicit:
        return previous.updated(kept_mask)
    if previous is not None and explicit and woodbury_pays(previous, kept_mask, m, size):
        # a small kept set, but a factored kernel a low-rank change away: its Woodbury
        # update costs less than a fresh |R|×|R| Gram and inverse
        return previous.updated(kept_mask)
    if explicit:
        return ExplicitInverse(g_block, kept_mask.nonzero().flatten(), damp)
    return KernelInverse(g_block, kept_mask, damp, max_rank=kernel_max_rank(m))


def woodbury_pays(previous: KernelInverse, kept_mask: Tensor, m: int, size: int) -> bool:
    """Whether updating the kernel-form ``previous`` to ``kept_mask`` (``size`` kept, at
    most m) by Woodbury costs fewer operations than a fresh explicit inverse: the
    change's solves and capacitance (2m²r + 2mr² + r³ for r changed columns, no
    refactor) against the Gram and inverse (m·size² + 4·size³/3)."""
    if previous.refactors(kept_mask):
        return False
    rank = int((kept_mask ^ previous.base_mask).sum())
    woodbury = 2.0 * m * m * rank + 2.0 * m * rank * rank + float(rank) ** 3
    fresh = float(m) * size * size + 4.0 * float(size) ** 3 / 3.0
    return woodbury < fresh


def keeps_gram(g_block: Tensor) -> bool:
    """Whether a kernel-form inverse keeps its m×m Gram for later downdates: only where
    it is at most an eighth of the block's G (m ≤ d/8), so that it never weighs in
    the peak memory."""
    m = g_block.shape[0]
    return 8 * m * m <= g_block.numel()


def kernel_max_rank(m: int) -> int:
    """Columns a kernel-form inverse may differ from its factored base by before it is
    refactored. At r ≤ m/4 the Woodbury set-up (2m²·r ≤ m³/2 for the solves) costs less
    than any refactor (a Gram m²·|R| plus a Cholesky m³/3, at least 4m³/3 as |R| > m
    in this form), and its working set (W, Z and the store of 2r solves, about 4·m·r
    numbers) is at most one m×m matrix, what a refactor holds."""
    return max(64, m // 4)


def KeptInverse(g_kept: Tensor, damp: float) -> ExplicitInverse | KernelInverse:  # noqa: N802
    """F_RR⁻¹ for all the columns of ``g_kept`` (= G_R)."""
    kept = torch.ones(g_kept.shape[1], dtype=torch.bool, device=g_kept.device)
    return kept_inverse(g_kept, kept, damp)
