"""SynFlow (Tanaka et al. 2020): data-free synaptic flow ``|θ| ⊙ ∂R/∂|θ|``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call

from prunekit.errors import ConfigError
from prunekit.methods.init._common import model_device, resolve_params, scoring_state
from prunekit.methods.scores import Scores


def synflow_scores(
    model: nn.Module,
    input_shape: Sequence[int],
    params: Iterable[str] | Mapping[str, Tensor] | None = None,
    double: bool = True,
) -> Scores:
    """SynFlow scores; the lowest are removed.

    The network is linearised: every parameter and floating-point buffer is replaced
    by its absolute value (through ``torch.func.functional_call``: the model itself
    is not touched), batch norm runs in eval mode (running statistics), and an
    all-ones input of shape ``(1, *input_shape)`` gives ``R = sum(output)``. The score
    of weight q is ``|θ_q| · ∂R/∂|θ_q|`` (non-negative). For a bias-free ReLU network
    R is ``1ᵀ(Π |W_l|) 1`` and the scores obey a conservation law: at each hidden
    neuron the incoming weights' scores sum to the outgoing weights' scores.

    ``double`` (default) computes in float64: R grows like the product of the layer
    norms and overflows float32 on deep networks. Scores come back in that dtype.
    The paper applies SynFlow in 100 rounds (``prune_iteratively``); one call is one
    round.
    """
    shape = tuple(int(s) for s in input_shape)
    if not shape or any(s < 1 for s in shape):
        raise ConfigError(
            f"input_shape must be positive sizes without batch dim, got {input_shape}"
        )
    chosen = resolve_params(model, params)
    device = model_device(model)
    dtype = torch.float64 if double else None

    def linear(t: Tensor) -> Tensor:
        t = t.detach()
        if not t.is_floating_point():
            return t
        return t.abs().to(dtype=dtype or t.dtype)

    tensors = {n: linear(t) for n, t in model.named_parameters()}
    tensors.update({n: linear(t) for n, t in model.named_buffers()})
    for name in chosen:
        tensors[name].requires_grad_(True)
    leaves = [tensors[n] for n in chosen]
    some = next(iter(chosen.values()))
    ones = torch.ones((1, *shape), device=device, dtype=dtype or some.dtype)
    with scoring_state(model, train=False):
        flow = functional_call(model, tensors, (ones,)).sum()
        grads = torch.autograd.grad(flow, leaves, allow_unused=True, materialize_grads=True)
    del flow
    values = {n: gr.mul_(t.detach()).abs_() for n, t, gr in zip(chosen, leaves, grads, strict=True)}
    return Scores(values=values, remove="lowest")
