"""Shared plumbing of the scoring methods: parameter selection, data chunks, and
running a model without leaving a trace on it (modes, buffers, ``.grad``)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from prunekit.errors import ConfigError, NonFiniteError
from prunekit.masks import prunable_parameters
from prunekit.utils.distributed import all_reduce_sum_, is_distributed, shard_bounds
from prunekit.utils.model_checks import check_batch

Batch = tuple[Tensor, Tensor]
BatchesLike = Iterable[Batch] | Batch

Loss = Callable[[Tensor, Tensor], Tensor]
"""A loss of (logits, targets), e.g. ``F.cross_entropy``."""


def resolve_params(
    model: nn.Module, params: Iterable[str] | Mapping[str, Tensor] | None
) -> dict[str, nn.Parameter]:
    """The parameters to score, by name and in model order.

    ``params`` may be names or a ``{name: parameter}`` dict (as returned by
    ``prunekit.masks.prunable_parameters``); ``None`` means that function's default.
    """
    chosen = _named_params(model, params)
    for name, param in chosen.items():
        if param.is_floating_point() and not bool(torch.isfinite(param).all()):
            raise NonFiniteError(
                f"scoring: weight {name} holds NaN/Inf values, so its scores would too; "
                "check the weights (initialisation or checkpoint) before pruning"
            )
    return chosen


def _named_params(
    model: nn.Module, params: Iterable[str] | Mapping[str, Tensor] | None
) -> dict[str, nn.Parameter]:
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


def _class_spread_chunks(inputs: Tensor, targets: Tensor, count: int) -> list[Batch]:
    """Cut one batch into ``count`` chunks holding every class about equally.

    Samples are grouped by label (stable: their order within a class is kept) and
    dealt round-robin, whatever the batch's order (sorted by class or interleaved).
    Targets that are not class labels (not 1-D integers) are dealt in batch order.
    """
    if targets.dim() == 1 and not targets.is_floating_point():
        order = torch.sort(targets.detach().cpu(), stable=True).indices
    else:
        order = torch.arange(len(inputs))
    chunks = []
    for i in range(count):
        index = order[i::count].to(inputs.device)
        chunks.append((inputs[index], targets[index.to(targets.device)]))
    return chunks


def as_batches(data: BatchesLike, chunk_size: int | None = None) -> list[Batch]:
    """A list of ``(inputs, targets)`` chunks from an iterable of batches or one batch.

    With ``chunk_size``, each batch of n samples is cut into ``ceil(n / chunk_size)``
    chunks with the classes spread evenly over them (see ``_class_spread_chunks``):
    batch-norm statistics of a chunk that misses classes would differ from the
    whole sample's.
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
        if not (
            isinstance(batch, tuple | list)
            and len(batch) == 2
            and all(isinstance(t, Tensor) for t in batch)
        ):
            raise ConfigError("each batch must be an (inputs, targets) pair of tensors")
        if len(batch[0]) != len(batch[1]) or len(batch[0]) == 0:
            raise ConfigError(
                f"a batch holds {len(batch[0])} inputs and {len(batch[1])} targets; scoring "
                "needs at least one sample and as many targets as inputs"
            )
    if chunk_size is None:
        return [(x, y) for x, y in batches]
    if chunk_size < 1:
        raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}")
    chunks = []
    for x, y in batches:
        chunks.extend(_class_spread_chunks(x, y, math.ceil(len(x) / chunk_size)))
    return chunks


def check_batches(model: nn.Module, batches: list[Batch]) -> None:
    """Every batch fits ``model``: input shape, finite inputs, labels within its outputs."""
    for i, (inputs, targets) in enumerate(batches):
        check_batch(model, inputs, targets, what=f"scoring batch {i}")


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


def take_grads(tensors: Iterable[Tensor]) -> list[Tensor]:
    """The gradients accumulated in ``tensors``' ``.grad`` (zeros where none arrived),
    handed over: each ``.grad`` is reset to None, so the caller owns the buffers."""
    out = []
    for t in tensors:
        out.append(t.grad if t.grad is not None else torch.zeros_like(t))
        t.grad = None
    return out


def leaf_copies(params: Mapping[str, Tensor], dtype: torch.dtype | None = None) -> dict:
    """Detached tensors that require grad, standing in for ``params`` in a
    ``torch.func.functional_call``: gradients land on them, never on the model."""
    return {
        n: p.detach().to(dtype=dtype or p.dtype).requires_grad_(True) for n, p in params.items()
    }


def shards_scoring(model: nn.Module) -> bool:
    """Whether scoring is split over the processes of ``torch.distributed``: yes, unless
    the model has batch norm (in train mode each process's part would have its own
    batch statistics, so the scores would differ from one process's; such models are
    scored on the whole sample in every process instead)."""
    has_batch_norm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    return is_distributed() and not has_batch_norm


def local_part(inputs: Tensor, targets: Tensor, sharded: bool) -> tuple[Tensor, Tensor, float]:
    """This process's contiguous part of a chunk and its weight n_part / n_chunk, so
    that ``weight · mean loss of the part``, summed over the processes, is the chunk's
    mean loss. Not sharded: the whole chunk, weight 1."""
    if not sharded:
        return inputs, targets, 1.0
    start, end = shard_bounds(len(inputs))
    return inputs[start:end], targets[start:end], (end - start) / len(inputs)


def sum_over_processes_(grads: list[Tensor], sharded: bool) -> list[Tensor]:
    """Each process's accumulated gradients summed over the processes, in place."""
    return all_reduce_sum_(grads) if sharded else grads
