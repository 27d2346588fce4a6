"""A deterministic random classification set of any input shape, for tests and demos."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from prunekit.data.base import InMemoryDataset
from prunekit.errors import DataError


class Synthetic(InMemoryDataset):
    """``num_samples`` inputs of ``input_shape`` in ``num_classes`` balanced classes.

    Each class has a random centre (drawn from ``seed``); an input is its class centre
    plus Gaussian noise of std ``noise``, so the task is learnable. The train and
    test sets share the centres and draw different noise. Inputs are float32 as
    generated (no normalisation); the same arguments always give the same tensors.
    """

    def __init__(
        self,
        num_samples: int = 512,
        input_shape: Sequence[int] = (1, 28, 28),
        num_classes: int = 10,
        train: bool = True,
        seed: int = 0,
        noise: float = 1.0,
    ) -> None:
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise DataError(f"synthetic data needs num_samples >= 1, got {num_samples!r}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise DataError(f"synthetic data needs num_classes >= 1, got {num_classes!r}")
        shape = tuple(int(d) for d in input_shape)
        if not shape or min(shape) < 1:
            raise DataError(f"synthetic input_shape must be positive sizes, got {input_shape!r}")
        centres = torch.randn((num_classes, *shape), generator=torch.Generator().manual_seed(seed))
        # A stream per split, distinct from the centres' stream.
        generator = torch.Generator().manual_seed(2 * seed + (1 if train else 2) + 1_000_003)
        targets = torch.arange(num_samples) % num_classes
        targets = targets[torch.randperm(num_samples, generator=generator)]
        inputs = centres[targets] + noise * torch.randn((num_samples, *shape), generator=generator)
        classes = [str(c) for c in range(num_classes)]
        super().__init__(inputs, targets, mean=None, std=None, classes=classes)
        self.train = train
