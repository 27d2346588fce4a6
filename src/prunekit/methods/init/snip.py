"""SNIP (Lee et al. 2019): connection sensitivity ``|θ ⊙ ∂L/∂θ|``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from prunekit.methods.init._common import (
    BatchesLike,
    as_batches,
    leaf_copies,
    model_device,
    resolve_params,
    scoring_state,
)
from prunekit.methods.scores import Scores

Loss = Callable[[Tensor, Tensor], Tensor]


def snip_scores(
    model: nn.Module,
    batches: BatchesLike,
    params: Iterable[str] | Mapping[str, Tensor] | None = None,
    loss: Loss = F.cross_entropy,
    train: bool = True,
) -> Scores:
    """SNIP scores ``|θ ⊙ g|`` with ``g = Σ_b ∇L_b`` summed over ``batches``; the lowest
    are removed.

    ``|θ_q g_q|`` is the magnitude of the derivative of the loss with respect to a
    multiplicative mask ``c_q`` at ``c = 1``: the first-order effect of removing weight q.
    The paper uses one batch (pass ``(inputs, targets)`` or a one-element list);
    several batches sum their gradients. ``loss`` takes ``(logits, targets)`` and
    defaults to the mean cross-entropy. The model runs in train mode
    (``train=True``, batch-norm batch statistics); its modes, buffers, weights and
    ``.grad`` are left exactly as they were.
    """
    chosen = resolve_params(model, params)
    device = model_device(model)
    leaves = leaf_copies(chosen)
    grads = {n: torch.zeros_like(t) for n, t in leaves.items()}
    with scoring_state(model, train=train):
        for inputs, targets in as_batches(batches):
            logits = functional_call(model, leaves, (inputs.to(device),))
            value = loss(logits, targets.to(device))
            for n, grad in zip(
                leaves, torch.autograd.grad(value, list(leaves.values())), strict=True
            ):
                grads[n] += grad
    values = {n: (leaves[n].detach() * grads[n]).abs() for n in leaves}
    return Scores(values=values, remove="lowest")
