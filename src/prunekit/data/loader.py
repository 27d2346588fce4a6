"""DataLoaders whose order is fixed by a seed."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    num_workers: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader with its own generator seeded by ``seed``: the shuffled order (and the
    base seed of the workers' random augmentation) is the same on every run.

    With ``num_workers=0`` augmentation draws from torch's global generator, so seed
    torch too for identical batches.
    """
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        drop_last=drop_last,
        generator=generator,
        persistent_workers=num_workers > 0,
    )
