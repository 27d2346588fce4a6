"""scikit-learn's bundled 8x8 digits: the offline default dataset (no files needed)."""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

from prunekit.data.base import InMemoryDataset

# Pixel values 0..16 are divided by 16; these are the mean and std of all 1797
# images at that scale (8x8, before any resizing).
DIGITS_MEAN = (0.3053,)
DIGITS_STD = (0.3760,)


@lru_cache(maxsize=1)
def _load() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32).div_(16.0).unsqueeze(1)
    return images, torch.as_tensor(bunch.target, dtype=torch.long)


def digits_split(test_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Train and test indices into the 1797 digits: a stratified split fixed by ``seed``
    (``round(test_fraction * n_c)`` images of each class go to the test set)."""
    targets = _load()[1]
    generator = torch.Generator().manual_seed(seed)
    train, test = [], []
    for label in range(10):
        members = torch.nonzero(targets == label).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        n_test = round(test_fraction * len(members))
        test.append(members[:n_test])
        train.append(members[n_test:])
    return torch.cat(train).sort().values, torch.cat(test).sort().values


class Digits(InMemoryDataset):
    """The 1797 sklearn digits, 10 classes, items ``(float (1, S, S), label)``.

    Pixels are scaled to [0, 1] (divided by 16) and normalised with
    :data:`DIGITS_MEAN` / :data:`DIGITS_STD`. ``image_size`` S is 8 (native) by
    default; another value resizes every image once, bilinearly (e.g. 28 to feed
    MNIST-shaped models). ``flatten`` gives vectors ``(S*S,)`` instead. The split puts
    ``test_fraction`` of each class in the test set, fixed by ``seed``.
    """

    def __init__(
        self,
        train: bool = True,
        image_size: int = 8,
        flatten: bool = False,
        test_fraction: float = 0.2,
        seed: int = 0,
    ) -> None:
        images, targets = _load()
        if image_size != 8:
            images = F.interpolate(
                images, size=(image_size, image_size), mode="bilinear", align_corners=False
            )
        train_idx, test_idx = digits_split(test_fraction, seed)
        idx = train_idx if train else test_idx
        super().__init__(images[idx].contiguous(), targets[idx], DIGITS_MEAN, DIGITS_STD)
        self.classes = [str(d) for d in range(10)]
        self.train = train
        self.flatten = flatten

    @property
    def input_shape(self) -> tuple[int, ...]:
        shape = tuple(self.data.shape[1:])
        return (shape[0] * shape[1] * shape[2],) if self.flatten else shape

    def transform(self, raw: torch.Tensor, augment: bool | None = None) -> torch.Tensor:
        images = super().transform(raw, augment)
        return images.flatten(1) if self.flatten else images
