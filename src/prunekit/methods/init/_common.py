"""Shared plumbing of the scoring methods: parameter selection, data chunks, and
running a model without leaving a trace on it (modes, buffers, ``.grad``)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from prunekit.errors import ConfigError
from prunekit.masks import prunable_parameters

Batch = tuple[Tensor, Tensor]
BatchesLike = Iterable[Batch] | Batch


def resolve_params(
    model: nn.Module, params: Iterable[str] | Mapping[str, Tensor] | None
) -> dict[str, nn.Parameter]:
    """The parameters to score, by name and in model order.

    ``params`` may be names or a ``{name: parameter}`` dict (as returned by
    ``prunekit.masks.prunable_parameters``); ``None`` means that function's default.
    """
    if params is None:
        return prunable_parameters(model)
    wanted = set(params)
    available = dict(model.named_parameters())
    unknown = sorted(wanted - set(available))
    if unknown:
        raise ConfigError(
            f"{unknown} are not parameters of the model; names look like {list(available)[:5]}"
        )
    if not wanted:
        raise ConfigError("no parameter to score: params is empty")
    return {n: p for n, p in available.items() if n in wanted}


def model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def as_batches(data: BatchesLike, chunk_size: int | None = None) -> list[Batch]:
    """A list of ``(inputs, targets)`` chunks from an iterable of batches or one batch.

    With ``chunk_size``, each batch is cut into ``ceil(n / chunk_size)`` chunks taking
    every n-th sample (``x[i::n]``), not contiguous slices: a class-ordered sample
    then gives every chunk every class, which batch-norm statistics need.
    """
    if (
        isinstance(data, tuple | list)
        and len(data) == 2
        and all(isinstance(t, Tensor) for t in data)
    ):
        batches = [tuple(data)]
    else:
        batches = list(data)
    if not batches:
        raise ConfigError("no data: the batches iterable is empty")
    for batch in batches:
        if not (isinstance(batch, tuple | list) and len(batch) == 2):
            raise ConfigError("each batch must be an (inputs, targets) pair of tensors")
    if chunk_size is None:
        return [(x, y) for x, y in batches]
    if chunk_size < 1:
        raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}")
    chunks = []
    for x, y in batches:
        n = math.ceil(len(x) / chunk_size)
        chunks.extend((x[i::n].contiguous(), y[i::n].contiguous()) for i in range(n))
    return chunks


@contextmanager
def scoring_state(model: nn.Module, train: bool) -> Iterator[None]:
    """Run ``model`` in train (or eval) mode, then restore every module's mode and
    every buffer (batch-norm running statistics, ``num_batches_tracked``)."""
    modes = [(module, module.training) for module in model.modules()]
    saved = [(buffer, buffer.detach().clone()) for buffer in model.buffers()]
    model.train(train)
    try:
        with torch.enable_grad():
            yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)
        for module, mode in modes:
            module.training = mode


def leaf_copies(params: Mapping[str, Tensor], dtype: torch.dtype | None = None) -> dict:
    """Detached tensors that require grad, standing in for ``params`` in a
    ``torch.func.functional_call``: gradients land on them, never on the model."""
    return {
        n: p.detach().to(dtype=dtype or p.dtype).requires_grad_(True) for n, p in params.items()
    }
