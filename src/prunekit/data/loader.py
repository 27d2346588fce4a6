"""DataLoaders whose order is fixed by a seed."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from prunekit.errors import ConfigError
from prunekit.utils.distributed import get_rank, get_world_size, is_distributed


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
    torch too for identical batches. Under ``torch.distributed`` a shuffled loader is
    sharded: a ``DistributedSampler`` (seeded, reshuffled each epoch by the trainer)
    gives each process its part of every epoch, and ``batch_size`` stays the global
    batch: each of the N processes takes ``batch_size / N`` samples a step (so a step
    averages the gradient over the same number of samples as one process does).
    """
    generator = torch.Generator().manual_seed(seed)
    sampler = None
    if shuffle and is_distributed():
        world = get_world_size()
        if batch_size % world:
            raise ConfigError(
                f"batch_size {batch_size} is the global batch and must split evenly over "
                f"the {world} processes; use a multiple of {world}"
            )
        batch_size //= world
        sampler = DistributedSampler(dataset, world, get_rank(), True, seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last,
        generator=generator,
        persistent_workers=num_workers > 0,
    )
