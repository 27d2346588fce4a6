"""CBS-S: choose the removal set P (|P| = k) by pairwise-swap local search.

Objective: L(P) = w_Pᵀ F_PP w_P with F = GᵀG/m, undamped and block diagonal, never
formed. With u = w ⊙ 1_P and y_b = G_b u_b (one m-vector per block),
(Fu)_i = g_iᵀ y_b(i) / m and L(P) = Σ_b ‖y_b‖²/m.

- α_i = 2 w_i (Fu)_i − w_i² F_ii for i ∈ P: the decrease of L if i is kept.
- β_j = 2 w_j (Fu)_j + w_j² F_jj for j ∉ P: the increase of L if j is removed.
- γ_ij = 2 w_i F_ij w_j.  Swapping i out of P and j into P changes L by
  Δ = β_j − γ_ij − α_i; the swap is accepted when Δ ≤ −ε.

Swaps are applied greedily, one at a time, with exact bookkeeping: a swap updates
the two affected y_b in O(m), and every candidate's α_i, β_j and γ_ij are computed
from the current y when it is tried (O(m) each). The orders of a pass (P by α
descending, the kept set by β ascending, computed at the start of the pass) are only
a heuristic for which pairs to try; the accept test always uses the exact Δ of the
current set, so every accepted swap lowers L by at least ε. At the end of a pass y is
recomputed from scratch in O(m·d), so rounding does not accumulate.

Within a pass the i at rank r (in P's order) tries the kept weights at ranks
r−ρ … r+ρ (inclusive, in β order), takes the first improving one, and the pass stops
after τ weights i found no partner. A weight moved in this pass is not tried again
until the next pass.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor

from prunekit.errors import ConfigError
from prunekit.second_order.fisher import Block, check_blocks, one_block
from prunekit.second_order.obs import _check_mask, lowest_k_mask
from prunekit.utils.types import RemovalLoss


class SwapState:
    """L(P) for a removal set P, kept exact under single swaps.

    Args:
        w: (d,) weights.
        grads: (m, d) gradients G (F = GᵀG/m, undamped).
        removed: (d,) bool, True = in P.
        blocks: contiguous ranges covering [0, d); default one block.

    Holds a contiguous copy of Gᵀ (d×m, so each weight's gradient vector is one row)
    and one m-vector y_b per block; computes in G's dtype.
    """

    def __init__(
        self, w: Tensor, grads: Tensor, removed: Tensor, blocks: Sequence[Block] | None = None
    ) -> None:
        m, d = grads.shape
        if w.shape != (d,):
            raise ConfigError(f"w has shape {tuple(w.shape)} but G has {d} columns")
        self.blocks = check_blocks(blocks if blocks is not None else one_block(d), d)
        self.w = w.to(device=grads.device, dtype=grads.dtype)
        # Rows of Gᵀ are the per-weight gradient vectors g_i: contiguous for fast access.
        self.grads_t = grads.T.contiguous()
        self.num_samples = m
        self.removed = _check_mask(removed, d).to(grads.device).clone()
        self.block_of = torch.cat(
            [torch.full((e - s,), b, dtype=torch.long) for b, (s, e) in enumerate(self.blocks)]
        ).to(grads.device)
        # m · F_ii, without a d×m temporary
        self.fisher_diagonal_m = torch.linalg.vector_norm(self.grads_t, dim=1).square()
        self.fisher_diagonal = self.fisher_diagonal_m / m
        self.refresh()

    def refresh(self) -> None:
        """Recompute y_b = G_b (w ⊙ 1_P)_b for every block from scratch (O(m·d))."""
        u = torch.where(self.removed, self.w, torch.zeros_like(self.w))
        self.y = torch.stack([u[s:e] @ self.grads_t[s:e] for s, e in self.blocks])

    def loss(self) -> float:
        """L(P) = w_Pᵀ F_PP w_P."""
        return float((self.y * self.y).sum() / self.num_samples)

    def fisher_times_removed(self, idx: Tensor | None = None) -> Tensor:
        """(F u)_idx with u = w ⊙ 1_P; all d entries (blockwise matmul) when idx is None."""
        if idx is None:
            return (
                torch.cat([self.grads_t[s:e] @ self.y[b] for b, (s, e) in enumerate(self.blocks)])
                / self.num_samples
            )
        return (self.grads_t[idx] * self.y[self.block_of[idx]]).sum(-1) / self.num_samples

    def alpha(self, idx: Tensor | None = None) -> Tensor:
        """α_i = 2 w_i (Fu)_i − w_i² F_ii (meaningful for i ∈ P)."""
        w, diag = self._take(self.w, idx), self._take(self.fisher_diagonal, idx)
        return 2 * w * self.fisher_times_removed(idx) - w * w * diag

    def beta(self, idx: Tensor | None = None) -> Tensor:
        """β_j = 2 w_j (Fu)_j + w_j² F_jj (meaningful for j ∉ P)."""
        w, diag = self._take(self.w, idx), self._take(self.fisher_diagonal, idx)
        return 2 * w * self.fisher_times_removed(idx) + w * w * diag

    def gamma(self, i: int, js: Tensor) -> Tensor:
        """γ_ij = 2 w_i F_ij w_j for one i and a tensor of j (zero across blocks)."""
        f_ij = (self.grads_t[js] @ self.grads_t[i]) / self.num_samples
        f_ij = f_ij * (self.block_of[js] == self.block_of[i])
        return 2 * self.w[i] * f_ij * self.w[js]

    def swap_delta(self, i: int, js: Tensor) -> Tensor:
        """Exact change of L when i leaves P and each j of ``js`` joins it: β_j − γ_ij − α_i.

        The arithmetic of alpha/beta/gamma (all scaled by m here) with one gather of
        the gradient rows, as it runs once per tried weight."""
        idx = torch.cat((torch.tensor([i], device=js.device), js))
        rows, blocks, w = self.grads_t[idx], self.block_of[idx], self.w[idx]
        fisher_u = (rows * self.y[blocks]).sum(1)  # m · (F u)
        same_block = blocks[1:] == blocks[0]
        fisher_ij = (rows[1:] @ rows[0]) * same_block  # m · F_ij
        own = w * w * self.fisher_diagonal_m[idx]  # m · w² F_ii
        alpha_i = 2 * w[0] * fisher_u[0] - own[0]
        beta_j = 2 * w[1:] * fisher_u[1:] + own[1:]
        gamma_ij = 2 * w[0] * w[1:] * fisher_ij
        return (beta_j - gamma_ij - alpha_i) / self.num_samples

    def swap(self, i: int, j: int) -> None:
        """Move i out of P and j into P, updating y in O(m)."""
        if not self.removed[i] or self.removed[j]:
            raise ConfigError(f"swap needs i={i} in P and j={j} outside it")
        self.y[self.block_of[i]] -= self.w[i] * self.grads_t[i]
        self.y[self.block_of[j]] += self.w[j] * self.grads_t[j]
        self.removed[i] = False
        self.removed[j] = True

    @staticmethod
    def _take(values: Tensor, idx: Tensor | None) -> Tensor:
        return values if idx is None else values[idx]


@dataclass
class PassRecord:
    """One pass of the search (pass 0 is the start): L(P), the caller's loss, swaps made."""

    pass_index: int
    quadratic_loss: float
    loss: float
    swaps: int


@dataclass
class SwapSearchResult:
    """Best mask found (True = removed), its loss, the pass it came from, and the history."""

    removed: Tensor
    loss: float
    best_pass: int
    history: list[PassRecord] = field(default_factory=list)


def swap_pass(
    state: SwapState,
    *,
    swap_threshold: float = 1e-4,
    rank_window: int = 10,
    max_failures: int = 20,
) -> int:
    """One pass of pairwise swaps on ``state`` (modified in place); returns the swap count."""
    removed_idx = state.removed.nonzero().flatten()
    kept_idx = (~state.removed).nonzero().flatten()
    if len(removed_idx) == 0 or len(kept_idx) == 0:
        return 0
    # Stable sorts: ties keep index order, so a pass is deterministic.
    by_alpha = removed_idx[torch.sort(-state.alpha()[removed_idx], stable=True).indices]
    by_beta = kept_idx[torch.sort(state.beta()[kept_idx], stable=True).indices]
    taken = torch.zeros(len(by_beta), dtype=torch.bool, device=by_beta.device)
    swaps = failures = 0
    # Weights ranked beyond the kept list's end plus the window have no partner.
    with _one_cpu_thread(state.w.device):
        for rank, i in enumerate(by_alpha[: len(by_beta) + rank_window].tolist()):
            if failures >= max_failures:
                break
            lo, hi = max(0, rank - rank_window), min(len(by_beta), rank + rank_window + 1)
            positions = torch.arange(lo, hi, device=by_beta.device)[~taken[lo:hi]]
            if len(positions):
                delta = state.swap_delta(i, by_beta[positions])
                improving = (delta <= -swap_threshold).nonzero()
                if len(improving):
                    position = int(positions[improving[0, 0]])
                    state.swap(i, int(by_beta[position]))
                    taken[position] = True
                    swaps += 1
                    continue
            failures += 1
    state.refresh()
    return swaps


def group_swap_pass(state: SwapState, groups: Tensor, swap_threshold: float) -> int:
    """One pass of swaps *within groups* (an N:M pattern): each removed weight i tries
    every kept weight of its own group and takes the best if it lowers L by at least ε,
    so the number kept per group never changes. Weights of group -1 never move.
    Returns the swap count."""
    swaps = 0
    groups = groups.to(state.removed.device)
    order = torch.argsort(groups, stable=True)
    sorted_groups = groups[order]
    starts = torch.searchsorted(sorted_groups, sorted_groups.unique())
    bounds = torch.cat((starts, torch.tensor([len(order)], device=starts.device))).tolist()
    with _one_cpu_thread(state.w.device):
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            if int(sorted_groups[lo]) < 0:
                continue
            members = order[lo:hi]
            for i in members[state.removed[members]].tolist():
                kept = members[~state.removed[members]]
                if len(kept) == 0:
                    break
                delta = state.swap_delta(i, kept)
                best = int(torch.argmin(delta))
                if float(delta[best]) <= -swap_threshold:
                    state.swap(i, int(kept[best]))
                    swaps += 1
    state.refresh()
    return swaps


@contextmanager
def _one_cpu_thread(device: torch.device) -> Iterator[None]:
    """Run the per-candidate loop on one intra-op thread on CPU: its operations are tiny
    (about 2ρ rows of m numbers), and waking a thread pool for each costs more than it
    saves (under CPU contention, tens of times more)."""
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def cbs_select(
    w: Tensor,
    grads: Tensor,
    start: Tensor,
    evaluate_loss: RemovalLoss | None = None,
    *,
    blocks: Sequence[Block] | None = None,
    swap_threshold: float = 1e-4,
    rank_window: int = 10,
    max_failures: int = 20,
    max_passes: int = 100,
    patience: int = 5,
    groups: Tensor | None = None,
) -> SwapSearchResult:
    """CBS-S local search from the removal mask ``start`` (k = start.sum() is kept fixed).

    With ``groups`` (one group number per weight, -1 for weights that never move, as
    ``masks.nm_groups`` gives for an N:M pattern) a swap stays within a group
    (:func:`group_swap_pass`), so a start with the pattern keeps it.

    After every pass the caller's ``evaluate_loss(removed_mask)`` (the real loss on
    training data; default: L(P) itself) scores the mask. The search stops after
    ``patience`` passes without a lower loss, after a pass with no swap, or after
    ``max_passes``; the mask with the lowest loss (earliest on ties) is returned.
    Defaults are the CBS paper's: ε = 1e-4, ρ = 10, τ = 20, 100 passes, patience 5.
    """
    if rank_window < 0 or max_failures < 1 or max_passes < 0 or patience < 1:
        raise ConfigError("need rank_window ≥ 0, max_failures ≥ 1, max_passes ≥ 0, patience ≥ 1")
    state = SwapState(w, grads, start, blocks)

    def score() -> tuple[float, float]:
        quadratic = state.loss()
        real = quadratic if evaluate_loss is None else float(evaluate_loss(state.removed.clone()))
        return quadratic, real

    quadratic, best_loss = score()
    history = [PassRecord(0, quadratic, best_loss, 0)]
    best_removed, best_pass = state.removed.clone(), 0
    since_best = 0
    for pass_index in range(1, max_passes + 1):
        if groups is not None:
            swaps = group_swap_pass(state, groups, swap_threshold)
        else:
            swaps = swap_pass(
                state,
                swap_threshold=swap_threshold,
                rank_window=rank_window,
                max_failures=max_failures,
            )
        if swaps == 0:
            break
        quadratic, loss = score()
        history.append(PassRecord(pass_index, quadratic, loss, swaps))
        if loss < best_loss:
            best_loss, best_removed, best_pass = loss, state.removed.clone(), pass_index
            since_best = 0
        else:
            since_best += 1
            if since_best >= patience:
                break
    return SwapSearchResult(best_removed, best_loss, best_pass, history)


def magnitude_start(w: Tensor, k: int) -> Tensor:
    """Global magnitude start: remove the k smallest |w| (ties by index)."""
    return lowest_k_mask(w.abs(), k)


def random_magnitude_mask(w: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:
    """One randomised-magnitude (RMP) mask with exactly k removed.

    The weights are shuffled into about √d chunks of near-equal size; each chunk keeps
    its largest |w|. The d − k kept slots are shared out in proportion to chunk size,
    the remainder going to the chunks with the largest fractional share (ties by chunk
    order), so the total is exact (the reference code's per-chunk ceil misses it)."""
    d = w.numel()
    if not 0 <= k <= d:
        raise ConfigError(f"cannot remove {k} of {d} weights")
    keep_total = d - k
    order = torch.randperm(d, generator=generator).to(w.device)
    chunks = torch.tensor_split(order, max(1, round(math.sqrt(d))))
    sizes = torch.tensor([len(c) for c in chunks])
    quotas = sizes * keep_total // d
    remainders = sizes * keep_total % d
    short = keep_total - int(quotas.sum())
    quotas[torch.sort(-remainders, stable=True).indices[:short]] += 1
    removed = torch.ones(d, dtype=torch.bool, device=w.device)
    magnitude = w.abs()
    for chunk, quota in zip(chunks, quotas.tolist(), strict=True):
        if quota:
            top = torch.sort(-magnitude[chunk], stable=True).indices[:quota]
            removed[chunk[top]] = False
    return removed


def rmp_start(
    w: Tensor,
    k: int,
    trials: int,
    generator: torch.Generator | None,
    evaluate_loss: RemovalLoss,
) -> Tensor:
    """Best of ``trials`` RMP masks (exactly k removed each) by the caller's loss
    ``evaluate_loss(removed_mask)`` on training data; earliest trial wins ties."""
    if trials < 1:
        raise ConfigError(f"need at least one RMP trial, got {trials}")
    best, best_loss = None, math.inf
    for _ in range(trials):
        removed = random_magnitude_mask(w, k, generator)
        loss = float(evaluate_loss(removed.clone()))
        if best is None or loss < best_loss:
            best, best_loss = removed, loss
    return best
