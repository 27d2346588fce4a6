"""An in-memory dataset: raw pixels kept once, normalised (and augmented) on access."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from prunekit.data.transforms import normalize, random_crop, random_hflip, to_float


class InMemoryDataset(Dataset):
    """Images ``(N, C, H, W)`` (or any inputs ``(N, ...)``) and labels held as tensors.

    ``data`` is uint8 (scaled by 1/255 on access) or float already in the range
    the normalisation expects; with ``mean``/``std`` None inputs are returned as
    stored (then ``data`` may have any shape). Items are ``(image float32 (C, H, W), label int)``;
    ``targets`` is a LongTensor of all labels, for samplers that must not load images.
    With ``augment``, each access applies a random crop of the image size after
    zero padding by ``crop_padding`` and a horizontal flip with probability 1/2,
    using torch's global generator.

    Batched access (``__getitems__``, used by ``DataLoader``) transforms a whole
    batch at once, which is much faster than one image at a time.
    """

    def __init__(
        self,
        data: torch.Tensor,
        targets: torch.Tensor,
        mean: Sequence[float] | None,
        std: Sequence[float] | None,
        classes: Sequence[str] | None = None,
        augment: bool = False,
        crop_padding: int = 4,
    ) -> None:
        if (mean is not None or augment) and data.dim() != 4:
            raise ValueError(f"data must be (N, C, H, W), got shape {tuple(data.shape)}")
        if targets.shape != (data.shape[0],):
            raise ValueError(f"{data.shape[0]} images but targets of shape {tuple(targets.shape)}")
        self.data = data
        self.targets = targets.to(torch.long)
        self.mean = None if mean is None else tuple(float(m) for m in mean)
        self.std = None if std is None else tuple(float(s) for s in std)
        if classes is None:
            count = int(self.targets.max()) + 1 if len(self.targets) else 0
            classes = [str(c) for c in range(count)]
        self.classes = list(classes)
        self.augment = augment
        self.crop_padding = crop_padding

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape[1:])

    def __len__(self) -> int:
        return self.data.shape[0]

    def transform(self, raw: torch.Tensor, augment: bool | None = None) -> torch.Tensor:
        """Raw batch → normalised float batch, augmented when ``augment`` (default
        ``self.augment``)."""
        images = to_float(raw)
        # Crop and flip before normalising: they commute with it, and padding is black.
        if self.augment if augment is None else augment:
            images = random_crop(images, images.shape[-2:], self.crop_padding)
            images = random_hflip(images)
        if self.mean is not None:
            images = normalize(images, self.mean, self.std)
        return images

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.transform(self.data[index].unsqueeze(0))
        return image[0], int(self.targets[index])

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, int]]:
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        images = self.transform(self.data[idx])
        return list(zip(images.unbind(0), self.targets[idx].tolist(), strict=True))

    def tensors(
        self, indices: Sequence[int] | torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inputs, targets)`` for ``indices`` (default all), normalised, never augmented."""
        idx = slice(None) if indices is None else torch.as_tensor(indices, dtype=torch.long)
        return self.transform(self.data[idx], augment=False), self.targets[idx].clone()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n={len(self)}, shape={self.input_shape}, "
            f"classes={self.num_classes}, augment={self.augment})"
        )
