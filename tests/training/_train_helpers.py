"""Tiny models, data and masks for the training tests (fast on 2 CPU cores)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from prunekit.masks import Mask, prunable_parameters

IN, HIDDEN, CLASSES = 16, 48, 4


def make_mlp(seed: int = 0, classes: int = CLASSES) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(IN, HIDDEN),
        nn.ReLU(),
        nn.Linear(HIDDEN, HIDDEN),
        nn.ReLU(),
        nn.Linear(HIDDEN, classes),
    )


def make_dataset(n: int = 256, seed: int = 0, classes: int = CLASSES) -> TensorDataset:
    """Inputs drawn with ``seed``; labels from one fixed linear teacher (same task for all)."""
    w = torch.randn(IN, classes, generator=torch.Generator().manual_seed(1234))
    x = torch.randn(n, IN, generator=torch.Generator().manual_seed(seed))
    y = (x @ w).argmax(dim=1)
    return TensorDataset(x, y)


def make_loaders(
    n_train: int = 256, batch_size: int = 16, generator: torch.Generator | None = None
) -> tuple[DataLoader, DataLoader]:
    train = DataLoader(
        make_dataset(n_train, 0), batch_size=batch_size, shuffle=True, generator=generator
    )
    test = DataLoader(make_dataset(128, 1), batch_size=64)
    return train, test


def random_mask(model: nn.Module, sparsity: float = 0.9, seed: int = 123) -> Mask:
    """Remove a random ``sparsity`` fraction of each prunable weight tensor."""
    g = torch.Generator().manual_seed(seed)
    mask = Mask()
    for name, p in prunable_parameters(model).items():
        scores = torch.rand(p.shape, generator=g)
        k = round(sparsity * p.numel())
        keep = torch.ones(p.numel(), dtype=torch.bool)
        keep[scores.reshape(-1).argsort()[:k]] = False
        mask[name] = keep.reshape(p.shape)
    return mask


def pruned_values(model: nn.Module, mask: Mask) -> torch.Tensor:
    """All weights the mask removes, concatenated (they must all be exactly zero)."""
    return torch.cat([model.get_parameter(n).detach()[~m] for n, m in mask.items()])
