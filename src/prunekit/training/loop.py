"""One training epoch and one evaluation pass.

Accuracies are percentages. Under ``torch.distributed``, counts are summed over
processes when the loader's sampler is a ``DistributedSampler`` (each process then
sees its own share of the data).
"""

from __future__ import annotations

import logging
import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from prunekit.errors import DataError, NonFiniteError
from prunekit.utils.model_checks import check_finite, check_finite_parameters
from prunekit.utils.types import Criterion

logger = logging.getLogger(__name__)


def _sum_over_processes(values: list[float], loader: DataLoader) -> list[float]:
    if not (dist.is_available() and dist.is_initialized()):
        return values
    if not isinstance(getattr(loader, "sampler", None), DistributedSampler):
        return values
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def _bar(loader: DataLoader, progress: bool, desc: str | None):
    # disable=None lets tqdm switch itself off when stderr is not a terminal
    return tqdm(
        loader, desc=desc, leave=False, dynamic_ncols=True, disable=None if progress else True
    )


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    device: torch.device | str,
    loss_fn: Criterion = F.cross_entropy,
    progress: bool = True,
    desc: str | None = None,
    log_every: int = 0,
) -> dict[str, float]:
    """Train ``model`` for one pass over ``loader``; ``{"loss", "top1"}`` averaged over samples.

    ``loss_fn(logits, targets)`` must return the batch mean. Every ``log_every`` steps
    (0: never) the running loss and accuracy go to the progress bar, or to the
    ``prunekit.training`` logger when there is no bar.
    """
    model.train()
    loss_sum, correct, seen = 0.0, 0.0, 0
    bar = _bar(loader, progress, desc)
    for step, (inputs, targets) in enumerate(bar, start=1):
        inputs = inputs.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        logits = model(inputs)
        loss = loss_fn(logits, targets)
        value = float(loss.detach())
        if not math.isfinite(value):
            _explain_nonfinite_loss(model, inputs, f"{desc or 'training'}, step {step}", value)
        loss.backward()
        optimizer.step()
        n = targets.shape[0]
        loss_sum += value * n
        correct += float((logits.detach().argmax(dim=1) == targets).sum())
        seen += n
        if log_every and step % log_every == 0:
            running = {"loss": f"{loss_sum / seen:.4f}", "top1": f"{100 * correct / seen:.2f}"}
            if bar.disable:
                logger.info("%s step %d: loss %s top1 %s", desc or "train", step, *running.values())
            else:
                bar.set_postfix(running)
    bar.close()
    loss_sum, correct, seen = _sum_over_processes([loss_sum, correct, float(seen)], loader)
    if seen == 0:
        raise DataError("the training set is empty: there is nothing to train on")
    return {"loss": loss_sum / seen, "top1": 100.0 * correct / seen}


def _explain_nonfinite_loss(model: nn.Module, inputs: Tensor, where: str, value: float) -> None:
    """Name the cause of a NaN/Inf loss: the inputs, the weights, or divergence."""
    check_finite(inputs, "the input batch", where)
    try:
        check_finite_parameters(model, where)
    except NonFiniteError:  # finite before training (fit checks): a step made them so
        raise NonFiniteError(
            f"{where}: the weights became NaN/Inf in the previous step: training diverged; "
            "lower the learning rate"
        ) from None
    raise NonFiniteError(
        f"{where}: the loss is {value} with finite weights and inputs: training diverged; "
        "lower the learning rate"
    )


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device | str,
    num_classes: int | None = None,
    loss_fn: Criterion = F.cross_entropy,
    progress: bool = False,
) -> dict[str, float]:
    """``{"loss", "top1"}`` (and ``"top5"`` when there are more than 10 classes) over ``loader``.

    ``num_classes`` defaults to the width of the model's output. Non-finite weights, an
    empty loader and a non-finite loss raise errors instead of a NaN result.
    """
    check_finite_parameters(model, "evaluation")
    model.eval()
    loss_sum, correct1, correct5, seen = 0.0, 0.0, 0.0, 0
    width = num_classes
    for inputs, targets in _bar(loader, progress, "eval"):
        inputs = inputs.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        logits = model(inputs)
        width = width or logits.shape[1]
        n = targets.shape[0]
        loss_sum += float(loss_fn(logits, targets)) * n
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits = top == targets.unsqueeze(1)
        correct1 += float(hits[:, 0].sum())
        correct5 += float(hits.any(dim=1).sum())
        seen += n
    loss_sum, correct1, correct5, seen = _sum_over_processes(
        [loss_sum, correct1, correct5, float(seen)], loader
    )
    if seen == 0:
        raise DataError("evaluation: the data set is empty (no samples to evaluate on)")
    if not math.isfinite(loss_sum):
        raise NonFiniteError(
            f"evaluation: the loss is {loss_sum / seen} with finite weights; check the inputs "
            "for NaN/Inf"
        )
    out = {"loss": loss_sum / seen, "top1": 100.0 * correct1 / seen}
    if width is not None and width > 10:
        out["top5"] = 100.0 * correct5 / seen
    return out
