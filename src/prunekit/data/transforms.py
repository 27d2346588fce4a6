"""Batch transforms on tensors: scaling to [0, 1], normalisation, random crop and flip.

Every function takes a batch ``(N, C, H, W)``; a single image is a batch of one.
Randomness comes from ``generator`` or, when it is None, torch's global generator,
so seeding torch (and the loader's generator, which seeds workers) makes it repeatable.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels → float32 in [0, 1]; float input is returned as float32 unchanged."""
    if images.dtype == torch.uint8:
        return images.to(torch.float32).div_(255.0)
    return images.to(torch.float32)


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(images - mean) / std`` per channel, on a float batch ``(N, C, H, W)``."""
    channels = images.shape[1]
    mean_t = torch.as_tensor(mean, dtype=images.dtype).reshape(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=images.dtype).reshape(1, -1, 1, 1)
    if mean_t.shape[1] not in (1, channels) or std_t.shape[1] not in (1, channels):
        raise ValueError(f"mean/std have {mean_t.shape[1]} values for {channels} channels")
    return (images - mean_t) / std_t


def random_crop(
    images: torch.Tensor,
    size: int | tuple[int, int],
    padding: int = 0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Zero-pad each side by ``padding``, then crop a random ``size`` window per image.

    Pad before normalising to match the usual recipe (padding is a black pixel).
    """
    height, width = (size, size) if isinstance(size, int) else size
    if padding:
        images = F.pad(images, (padding, padding, padding, padding))
    n, channels, padded_h, padded_w = images.shape
    if padded_h < height or padded_w < width:
        raise ValueError(f"crop {height}x{width} larger than image {padded_h}x{padded_w}")
    top = torch.randint(0, padded_h - height + 1, (n,), generator=generator)
    left = torch.randint(0, padded_w - width + 1, (n,), generator=generator)
    rows = (top[:, None] + torch.arange(height))[:, None, :, None]
    cols = (left[:, None] + torch.arange(width))[:, None, None, :]
    batch = torch.arange(n)[:, None, None, None]
    chans = torch.arange(channels)[None, :, None, None]
    return images[batch, chans, rows, cols]


def random_hflip(
    images: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Mirror each image left-right with probability ``p``."""
    flip = torch.rand(images.shape[0], generator=generator) < p
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size`` x ``size`` window (images must be at least that large)."""
    height, width = images.shape[-2:]
    if height < size or width < size:
        raise ValueError(f"crop {size}x{size} larger than image {height}x{width}")
    top, left = (height - size) // 2, (width - size) // 2
    return images[..., top : top + size, left : left + size]
