"""A tiny float64 network, its per-sample gradients and an independent training loss."""

import copy

import torch
from torch import nn

from prunekit.masks import prunable_parameters
from prunekit.second_order import per_sample_gradients


def tiny_problem(seed=0, m=64):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 5, bias=False), nn.ReLU(), nn.Linear(5, 3))
    model = model.double()
    x = torch.randn(m, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (m,))
    names = list(prunable_parameters(model))
    grads = per_sample_gradients(model, names, x, y)
    return model, names, x, y, grads


def training_loss(model, names, x, y):
    """``loss(flat_w)``: cross-entropy on (x, y) with the named weights set to ``flat_w``."""
    scratch = copy.deepcopy(model)

    def loss(flat):
        start = 0
        with torch.no_grad():
            for n in names:
                p = scratch.get_parameter(n)
                p.copy_(flat[start : start + p.numel()].reshape(p.shape))
                start += p.numel()
            return float(nn.functional.cross_entropy(scratch(x), y))

    return loss


def dense_kkt_update(w, grads, damp, removed, gradient=None):
    """δ and F of the exact update from the dense KKT system, F = λI + GᵀG/m:
    [F E; Eᵀ 0][δ; μ] = [−ḡ; −w_Q] (ḡ = 0 without ``gradient``)."""
    d, q = w.numel(), removed.nonzero().flatten()
    fisher = damp * torch.eye(d, dtype=torch.float64) + grads.T @ grads / grads.shape[0]
    e = torch.zeros(d, len(q), dtype=torch.float64)
    e[q, torch.arange(len(q))] = 1.0
    kkt = torch.zeros(d + len(q), d + len(q), dtype=torch.float64)
    kkt[:d, :d], kkt[:d, d:], kkt[d:, :d] = fisher, e, e.T
    g = torch.zeros(d, dtype=torch.float64) if gradient is None else gradient
    return torch.linalg.solve(kkt, torch.cat([-g, -w[q]]))[:d], fisher
