"""SNIP (Lee et al. 2019): connection sensitivity ``|θ ⊙ ∂L/∂θ|``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from prunekit.methods.init._common import (
    BatchesLike,
    Loss,
    as_batches,
    check_batches,
    leaf_copies,
    local_part,
    model_device,
    resolve_params,
    scoring_state,
    shards_scoring,
    sum_over_processes_,
    take_grads,
)
from prunekit.methods.scores import Scores


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
    several batches sum their gradients. Under ``torch.distributed`` each process takes
    its part of every batch and the gradients are summed over the processes, which
    equals one process's scores on the whole batch (models with batch norm are scored
    whole in every process, see ``shards_scoring``). ``loss`` takes ``(logits, targets)`` and
    defaults to the mean cross-entropy. The model runs in train mode
    (``train=True``, batch-norm batch statistics); its modes, buffers, weights and
    ``.grad`` are left exactly as they were.
    """
    chosen = resolve_params(model, params)
    device = model_device(model)
    leaves = leaf_copies(chosen)
    tensors = list(leaves.values())
    chunks = as_batches(batches)
    check_batches(model, chunks)
    sharded = shards_scoring(model)
    with scoring_state(model, train=train):
        for chunk in chunks:
            inputs, targets, weight = local_part(*chunk, sharded)
            if len(inputs):
                logits = functional_call(model, leaves, (inputs.to(device),))
                # Σ_b ∇L_b accumulates in .grad (this process's part of each batch)
                (weight * loss(logits, targets.to(device))).backward(inputs=tensors)
    grads = sum_over_processes_(take_grads(tensors), sharded)
    values = {  # in place: no second buffer
        name: grad.mul_(leaf.detach()).abs_()
        for (name, leaf), grad in zip(leaves.items(), grads, strict=True)
    }
    return Scores(values=values, remove="lowest")
