"""GraSP (Wang, Zhang & Grosse 2020): gradient signal preservation, ``S = −θ ⊙ Hg``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from prunekit.errors import ConfigError
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
from prunekit.methods.init._double_backward import CheapDoubleBackward
from prunekit.methods.scores import Scores


def _xavier_linear_weights(
    model: nn.Module, generator: torch.Generator | None
) -> dict[str, Tensor]:
    """Fresh Xavier-normal weights for every ``nn.Linear`` (the scoring copy's only)."""
    out = {}
    for module_name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            weight = torch.empty_like(module.weight.detach())
            nn.init.xavier_normal_(weight, generator=generator)
            out[f"{module_name}.weight" if module_name else "weight"] = weight
    return out


def grasp_scores(
    model: nn.Module,
    batches: BatchesLike,
    params: Iterable[str] | Mapping[str, Tensor] | None = None,
    temperature: float = 200.0,
    reinit_linear_xavier: bool = False,
    chunk_size: int | None = None,
    loss: Loss = F.cross_entropy,
    generator: torch.Generator | None = None,
    fast_hvp: bool = True,
) -> Scores:
    """GraSP scores ``S = −θ ⊙ (H g)``; the **highest** are removed.

    The loss is ``loss(logits / temperature, targets)`` (mean cross-entropy, T = 200).
    ``g = Σ_c ∇L_c`` over the chunks ``c`` of the data, and ``Hg = Σ_c ∇(g · ∇L_c)``:
    each chunk's double backward is done on its own, so memory is bounded by one
    chunk. ``g`` and ``H`` are restricted to the scored parameters. ``batches`` is an
    iterable of ``(inputs, targets)`` chunks (e.g. from the class-balanced sampler)
    or one ``(inputs, targets)`` pair; ``chunk_size`` cuts every batch further, with
    every class spread evenly over the chunks (batch-norm statistics need them all).

    Cost: for one chunk about three training steps (forward, backward keeping the
    graph, then a backward through both graphs with twice a plain backward's
    convolutions); each further chunk adds its plain gradient, about 1/n step each.
    The last chunk's graph serves for both g and its H·g. Memory: one chunk's double
    backward (2–3× a training step's activations on that chunk) plus g and H·g, one
    copy of the scored parameters each: more chunks, less memory, more time.

    Removing weight q alone changes ``‖g‖²`` by about ``2·S_q``, so removing the
    largest S costs the least gradient flow. The model runs in train mode (batch
    statistics); its modes, buffers, weights and ``.grad`` are left unchanged.
    ``reinit_linear_xavier`` re-draws every Linear weight (Xavier normal, from
    ``generator``) for scoring only, as the official code does on its copy; the
    scores of those weights then use the re-drawn values. Randomness inside the
    model (dropout) makes the two passes disagree: score with dropout-free models.

    Hg is always the exact product (double backward). A forward difference of two
    gradients, (∇L(θ + εg) − g)/ε, is not offered: in float32 with T = 200 it is
    swamped by rounding for small ε and by ReLU kinks crossed for large ε (on VGG-19 it
    kept 23–30% of the exact product's weights at ε from 1e-6 to 1e-4 of ‖θ‖; see
    ``reproductions/README.md``, scoring cost), and the forward-over-reverse product
    (``torch.func.jvp``) cost 5.4 steps against 2.7 for the double backward.

    ``fast_hvp`` routes convolutions and batch norm through Functions with cheaper
    second derivatives (same values; see ``_double_backward``); turn it off to use
    PyTorch's own double backward everywhere.
    """
    if temperature <= 0:
        raise ConfigError(f"temperature must be > 0, got {temperature}")
    chosen = resolve_params(model, params)
    device = model_device(model)
    leaves = leaf_copies(chosen)
    overrides: dict[str, Tensor] = dict(leaves)
    if reinit_linear_xavier:
        for name, weight in _xavier_linear_weights(model, generator).items():
            if name in leaves:
                weight.requires_grad_(True)
                leaves[name] = weight
            overrides[name] = weight
    chunks = as_batches(batches, chunk_size)
    check_batches(model, chunks)
    tensors = list(leaves.values())

    def chunk_loss(inputs: Tensor, targets: Tensor, weight: float) -> Tensor:
        logits = functional_call(model, overrides, (inputs.to(device),))
        return weight * loss(logits / temperature, targets.to(device))

    def gradient_with_graph(inputs: Tensor, targets: Tensor, weight: float) -> list[Tensor]:
        grads = torch.autograd.grad(
            chunk_loss(inputs, targets, weight),
            tensors,
            create_graph=True,
            allow_unused=True,
            materialize_grads=True,
        )
        return list(grads)

    def accumulate_hg(g: list[Tensor], grads: list[Tensor]) -> None:
        # the gradient of z = g · ∇L_c is H_c g, accumulated into the leaves' .grad;
        # ∇L_c is released before the backward (z's graph keeps only g)
        pairs = [(gr, gd) for gr, gd in zip(grads, g, strict=True) if gr.requires_grad]
        grads.clear()
        if pairs:
            z = sum(torch.dot(gd.reshape(-1), gr.reshape(-1)) for gr, gd in pairs)
            del pairs
            z.backward(inputs=tensors)

    # under torch.distributed each process takes its part of every chunk; g is summed
    # over the processes before the H·g pass, which needs the global g
    sharded = shards_scoring(model)
    parts = [p for p in (local_part(x, y, sharded) for x, y in chunks) if len(p[0])]
    with scoring_state(model, train=True), CheapDoubleBackward() if fast_hvp else nullcontext():
        # g = Σ_c ∇L_c, accumulated in place; the last chunk's gradient keeps its graph
        # so that its H_c g needs no second forward/backward
        first, last_grads = parts[:-1], None
        for part in first:
            chunk_loss(*part).backward(inputs=tensors)
        g = take_grads(tensors)
        if parts:
            last_grads = gradient_with_graph(*parts[-1])
            for total, piece in zip(g, last_grads, strict=True):
                total += piece.detach()
        sum_over_processes_(g, sharded)
        if last_grads is not None:
            accumulate_hg(g, last_grads)
        for part in first:
            accumulate_hg(g, gradient_with_graph(*part))
        hg = sum_over_processes_(take_grads(tensors), sharded)
    values = {n: h.mul_(leaves[n].detach()).neg_() for n, h in zip(leaves, hg, strict=True)}
    return Scores(values=values, remove="highest")
