"""Independent dense reference computations for the second-order tests (float64)."""

import itertools

import torch

from prunekit.second_order import EmpiricalFisher


def dense_fisher(grads, damp, blocks):
    """F = λI + GᵀG/m with the entries between different blocks set to zero."""
    m, d = grads.shape
    full = grads.T @ grads / m
    same_block = torch.zeros(d, d, dtype=torch.bool)
    for start, end in blocks:
        same_block[start:end, start:end] = True
    return full * same_block + damp * torch.eye(d, dtype=grads.dtype)


def kkt_update(fisher, w, removed_idx, gradient=None):
    """Solve min ḡᵀδ + ½δᵀFδ s.t. δ_Q = −w_Q through the explicit KKT system
    [[F, E_Q], [E_Qᵀ, 0]] [δ; μ] = [−ḡ; −w_Q] (ḡ = 0 when ``gradient`` is None)."""
    d = len(w)
    q = len(removed_idx)
    e_q = torch.zeros(d, q, dtype=w.dtype)
    e_q[removed_idx, torch.arange(q)] = 1.0
    system = torch.zeros(d + q, d + q, dtype=w.dtype)
    system[:d, :d] = fisher
    system[:d, d:] = e_q
    system[d:, :d] = e_q.T
    top = torch.zeros(d, dtype=w.dtype) if gradient is None else -gradient
    rhs = torch.cat([top, -w[removed_idx]])
    return torch.linalg.solve(system, rhs)[:d]


def local_objectives(fisher, w, removed_sets, gradient=None):
    """min over δ of ḡᵀδ + ½δᵀFδ s.t. δ_Q = −w_Q, for a batch of removal sets Q given as
    an (N, k) index tensor, from the explicit F: δ_R solves F_RR δ_R = F_RQ w_Q − ḡ_R."""
    n, k = removed_sets.shape
    d = len(w)
    gradient = torch.zeros(d, dtype=w.dtype) if gradient is None else gradient
    is_removed = torch.zeros(n, d, dtype=torch.bool)
    is_removed[torch.arange(n)[:, None], removed_sets] = True
    kept_sets = (~is_removed).nonzero()[:, 1].reshape(n, d - k)
    delta = torch.zeros(n, d, dtype=w.dtype)
    delta[torch.arange(n)[:, None], removed_sets] = -w[removed_sets]
    if k < d:
        f_rr = fisher[kept_sets[:, :, None], kept_sets[:, None, :]]
        f_rq = fisher[kept_sets[:, :, None], removed_sets[:, None, :]]
        rhs = (f_rq @ w[removed_sets][:, :, None])[:, :, 0] - gradient[kept_sets]
        delta[torch.arange(n)[:, None], kept_sets] = torch.linalg.solve(f_rr, rhs)
    return delta @ gradient + 0.5 * ((delta @ fisher) * delta).sum(1)


def exhaustive_optimum(fisher, w, k, gradient=None, fixed_removed=None):
    """Best removal mask of exactly k weights over all C(d, k) sets (containing the fixed
    ones) and its objective: brute force for tiny d."""
    d = len(w)
    fixed = [] if fixed_removed is None else fixed_removed.nonzero().flatten().tolist()
    free = [i for i in range(d) if i not in fixed]
    sets = [fixed + list(c) for c in itertools.combinations(free, k - len(fixed))]
    values = local_objectives(fisher, w, torch.tensor(sets, dtype=torch.long), gradient)
    best = int(torch.argmin(values))
    removed = torch.zeros(d, dtype=torch.bool)
    removed[sets[best]] = True
    return removed, values[best].item()


def random_instance(seed, with_gradient, d=None):
    """d in 10..14 (or given), m in 3..20, one or two blocks, λ in [1e-3, 1e-1], the
    gradients' columns correlated through a random mixing for odd seeds."""
    generator = torch.Generator().manual_seed(seed)

    def draw(lo, hi):
        return int(torch.randint(lo, hi + 1, (1,), generator=generator))

    d = d or draw(10, 14)
    m = draw(3, 20)
    grads = torch.randn(m, d, generator=generator, dtype=torch.float64)
    if seed % 2:
        mixing = torch.randn(d, d, generator=generator, dtype=torch.float64)
        grads = grads + 0.7 * grads @ mixing / d**0.5
    split = draw(3, d - 3)
    blocks = [(0, d)] if seed % 3 else [(0, split), (split, d)]
    damp = 10.0 ** float(torch.empty(1).uniform_(-3, -1, generator=generator))
    w = torch.randn(d, generator=generator, dtype=torch.float64)
    gradient = grads.mean(0) if with_gradient else None
    fisher = EmpiricalFisher(grads, damp, blocks, dtype=torch.float64)
    return w, grads, fisher, dense_fisher(grads, damp, blocks), gradient, draw(2, d - 2)
