"""Per-sample and per-mini-batch gradients as an (m, d) matrix G, with ``torch.func``.

Row n of G is the gradient of the loss of sample n (or of the mean loss of mini-batch
n) with respect to the named parameters, flattened and concatenated in the order of
``param_names``. Only those parameters are differentiated; the others and the buffers
are held fixed.

The model is evaluated in eval mode (BatchNorm uses its running statistics, dropout is
off), so a sample's gradient does not depend on the other samples it is batched with;
every module's train/eval flag is restored afterwards.

``loss(outputs, targets)`` must return the mean loss over its batch (as
``torch.nn.functional.cross_entropy`` does by default).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from prunekit.errors import ConfigError
from prunekit.utils.model_checks import check_batch, check_finite_parameters
from prunekit.utils.types import Criterion


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every module in eval mode, then restore each module's own flag."""
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in flags:
            module.training = training


def minibatch_gradients(
    model: nn.Module,
    param_names: Sequence[str],
    inputs: Tensor,
    targets: Tensor,
    batch_size: int,
    loss: Criterion = F.cross_entropy,
    *,
    chunk_size: int = 256,
    weight_major: bool = False,
    coordinates: Tensor | None = None,
) -> Tensor:
    """Gradients of the mean loss of consecutive mini-batches of ``batch_size`` samples:
    an (ceil(n / batch_size), d) matrix; the last mini-batch may be smaller.

    ``chunk_size`` samples go through one vectorised call, which bounds memory. With
    ``weight_major`` the matrix is the transpose of a contiguous (d, rows) array: each
    weight's gradients are then one contiguous row of memory, the layout the Fisher's
    swap search and restrictions read (no second copy of G is made for them). With
    ``coordinates`` (a bool vector of length d) only the columns of the weights marked
    True are kept, in order: an (rows, |coordinates|) matrix, never the full one."""
    if batch_size < 1 or chunk_size < 1:
        raise ConfigError(f"batch_size and chunk_size must be ≥ 1, got {batch_size}, {chunk_size}")
    gradient_of = _GradientFunction(model, param_names, loss)
    check_finite_parameters(model, "gradient samples")
    check_batch(model, inputs, targets, what="gradient samples")
    n = len(inputs)
    full = n // batch_size
    rows = full + (1 if n % batch_size else 0)
    width, columns = gradient_of.dim, None
    if coordinates is not None:
        if coordinates.dtype != torch.bool or coordinates.shape != (gradient_of.dim,):
            raise ConfigError(
                f"coordinates must be a bool vector of length {gradient_of.dim} (one per "
                f"weight), got {coordinates.dtype} of shape {tuple(coordinates.shape)}"
            )
        columns = coordinates.to(gradient_of.device).nonzero().squeeze(1)
        width = len(columns)
    shape = (width, rows) if weight_major else (rows, width)
    out = torch.empty(shape, dtype=gradient_of.dtype, device=gradient_of.device)
    if weight_major:
        out = out.T
    groups_per_chunk = max(1, chunk_size // batch_size)
    with eval_mode(model):
        for first in range(0, full, groups_per_chunk):
            last = min(full, first + groups_per_chunk)
            x = inputs[first * batch_size : last * batch_size]
            y = targets[first * batch_size : last * batch_size]
            x = x.reshape(last - first, batch_size, *x.shape[1:]).to(gradient_of.device)
            y = y.reshape(last - first, batch_size, *y.shape[1:]).to(gradient_of.device)
            chunk = gradient_of.batched(x, y)
            out[first:last] = chunk if columns is None else chunk[:, columns]
        if rows > full:
            x = inputs[full * batch_size :].to(gradient_of.device)
            y = targets[full * batch_size :].to(gradient_of.device)
            last_row = gradient_of.single(x, y)
            out[full] = last_row if columns is None else last_row[columns]
    return out


def per_sample_gradients(
    model: nn.Module,
    param_names: Sequence[str],
    inputs: Tensor,
    targets: Tensor,
    loss: Criterion = F.cross_entropy,
    *,
    chunk_size: int = 256,
    weight_major: bool = False,
    coordinates: Tensor | None = None,
) -> Tensor:
    """Gradient of each sample's loss: an (n, d) matrix (see the module docstring;
    ``weight_major`` and ``coordinates``: see :func:`minibatch_gradients`).

    Example::

        G = per_sample_gradients(model, ["fc1.weight", "fc2.weight"], x, y)
    """
    return minibatch_gradients(
        model, param_names, inputs, targets, 1, loss, chunk_size=chunk_size,
        weight_major=weight_major, coordinates=coordinates,
    )  # fmt: skip


def gradients_from_batches(
    model: nn.Module,
    param_names: Sequence[str],
    batches: Iterable[tuple[Tensor, Tensor]],
    loss: Criterion = F.cross_entropy,
    *,
    per_sample: bool = True,
    chunk_size: int = 256,
    max_rows: int | None = None,
) -> Tensor:
    """Gradients from an iterable of ``(inputs, targets)`` batches (e.g. a DataLoader):
    one row per sample (``per_sample=True``) or one row per batch, the gradient of the
    batch's mean loss. Stops after ``max_rows`` rows when given."""
    pieces: list[Tensor] = []
    count = 0
    for inputs, targets in batches:
        if max_rows is not None and count >= max_rows:
            break
        if per_sample:
            if max_rows is not None:
                inputs, targets = inputs[: max_rows - count], targets[: max_rows - count]
            piece = per_sample_gradients(
                model, param_names, inputs, targets, loss, chunk_size=chunk_size
            )
        else:
            piece = minibatch_gradients(
                model, param_names, inputs, targets, len(inputs), loss, chunk_size=chunk_size
            )
        pieces.append(piece)
        count += len(piece)
    if not pieces:
        raise ConfigError("no batches to compute gradients from")
    return torch.cat(pieces)


class _GradientFunction:
    """Flattened gradient of ``loss(model(x), y)`` with respect to the named parameters."""

    def __init__(self, model: nn.Module, param_names: Sequence[str], loss: Criterion) -> None:
        params = dict(model.named_parameters())
        missing = [name for name in param_names if name not in params]
        if missing or not param_names:
            raise ConfigError(
                f"unknown parameter name(s) {missing}; the model has {sorted(params)}"
                if missing
                else "no parameter names given"
            )
        self.names = list(param_names)
        self.wrt = {name: params[name].detach() for name in self.names}
        self.fixed = {n: p.detach() for n, p in params.items() if n not in self.wrt}
        self.fixed.update(dict(model.named_buffers()))
        self.model = model
        self.loss = loss
        first = self.wrt[self.names[0]]
        self.dtype, self.device = first.dtype, first.device
        self.dim = sum(p.numel() for p in self.wrt.values())
        self._grad = grad(self._loss_of)
        self._batched = vmap(self._grad, in_dims=(None, 0, 0))

    def _loss_of(self, wrt: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        outputs = functional_call(self.model, {**self.fixed, **wrt}, (x,))
        return self.loss(outputs, y)

    def batched(self, x: Tensor, y: Tensor) -> Tensor:
        """(groups, d): one gradient per leading slice of x and y (each a mini-batch)."""
        grads = self._batched(self.wrt, x, y)
        return torch.cat([grads[n].reshape(len(x), -1) for n in self.names], 1)

    def single(self, x: Tensor, y: Tensor) -> Tensor:
        """(d,): the gradient of the mean loss over the batch x, y."""
        grads = self._grad(self.wrt, x, y)
        return torch.cat([grads[n].reshape(-1) for n in self.names])
