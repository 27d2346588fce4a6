"""Class-balanced samples: the same number of examples of every class.

Scoring methods such as GraSP and SNIP look at a few examples per class, often
split into several chunks (one per forward pass). If the examples were ordered by
class, the first half would only hold the first half of the classes; here they
are interleaved, so every chunk holds every class.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from prunekit.errors import PrunekitError


def dataset_targets(dataset: Dataset) -> torch.Tensor:
    """The labels of ``dataset`` as a LongTensor: its ``targets`` attribute when it has
    one (no input is loaded), else read item by item."""
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        return torch.as_tensor(targets, dtype=torch.long)
    return torch.tensor([int(dataset[i][1]) for i in range(len(dataset))], dtype=torch.long)


def class_balanced_indices(
    labels: Sequence[int] | torch.Tensor,
    samples_per_class: int,
    generator: torch.Generator | None = None,
    seed: int | None = None,
) -> torch.LongTensor:
    """``samples_per_class`` random indices of every class present in ``labels``, drawn
    without replacement, interleaved: ``[c0, c1, ..., cK, c0, c1, ..., cK, ...]`` in
    increasing class order. So any contiguous block of ``j * num_classes`` indices
    starting at a multiple of ``num_classes`` holds ``j`` examples of each class.

    Randomness: ``generator`` if given, else a generator seeded with ``seed``, else
    torch's global generator.
    """
    labels = torch.as_tensor(labels, dtype=torch.long).flatten()
    if samples_per_class < 1:
        raise PrunekitError(f"samples_per_class must be at least 1, got {samples_per_class}")
    if generator is None and seed is not None:
        generator = torch.Generator().manual_seed(seed)
    classes = torch.unique(labels)
    columns = []
    for label in classes.tolist():
        members = torch.nonzero(labels == label).flatten()
        if len(members) < samples_per_class:
            raise PrunekitError(
                f"class {label} has {len(members)} examples, fewer than the "
                f"{samples_per_class} per class requested"
            )
        chosen = torch.randperm(len(members), generator=generator)[:samples_per_class]
        columns.append(members[chosen])
    if not columns:
        return torch.empty(0, dtype=torch.long)
    # rows = classes, columns = draws; reading column by column interleaves classes.
    return torch.stack(columns).t().reshape(-1)


def _load(dataset: Dataset, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    index_list = indices.tolist()
    getitems = getattr(dataset, "__getitems__", None)
    items = getitems(index_list) if getitems is not None else [dataset[i] for i in index_list]
    inputs = torch.stack([torch.as_tensor(x) for x, _ in items])
    targets = torch.tensor([int(y) for _, y in items], dtype=torch.long)
    return inputs, targets


def class_balanced_batches(
    dataset: Dataset, samples_per_class: int, num_iters: int = 1, seed: int = 0
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``num_iters`` chunks ``(inputs, targets)``, each with ``samples_per_class``
    examples of every class (interleaved by class), all distinct: the dataset must
    hold at least ``samples_per_class * num_iters`` examples of each class.

    Items are read through the dataset, so its augmentation applies (as when they
    come from a training loader). Labels come from ``dataset.targets`` when present.
    """
    if num_iters < 1:
        raise PrunekitError(f"num_iters must be at least 1, got {num_iters}")
    labels = dataset_targets(dataset)
    indices = class_balanced_indices(labels, samples_per_class * num_iters, seed=seed)
    chunk = len(indices) // num_iters
    return [_load(dataset, indices[i * chunk : (i + 1) * chunk]) for i in range(num_iters)]
