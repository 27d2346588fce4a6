"""Independent dense reference computations for the second-order tests (float64)."""

import torch


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
