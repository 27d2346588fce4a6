"""Datasets by name: ``get_dataset``, ``list_datasets``, ``dataset_info``."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from torch.utils.data import Dataset

from prunekit.data.cifar import (
    CIFAR10,
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100,
    CIFAR100_MEAN,
    CIFAR100_STD,
)
from prunekit.data.digits import DIGITS_MEAN, DIGITS_STD, Digits
from prunekit.data.imagefolder import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    TINY_IMAGENET_MEAN,
    TINY_IMAGENET_STD,
    ImageFolderDataset,
    tiny_imagenet_root,
)
from prunekit.data.mnist import MNIST, MNIST_MEAN, MNIST_STD
from prunekit.data.paths import resolve_data_root
from prunekit.data.synthetic import Synthetic
from prunekit.errors import ConfigError, DataNotFoundError

Root = str | os.PathLike[str] | None


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset before loading it.

    ``num_classes`` is None for a generic image folder (it depends on the folder).
    ``mean``/``std`` are None where inputs are not normalised (synthetic).
    """

    name: str
    input_shape: tuple[int, ...]
    num_classes: int | None
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    downloadable: bool
    augmentable: bool
    description: str


@dataclass(frozen=True)
class _Entry:
    build: Callable[..., Dataset]  # (root, train, augment, **options) -> Dataset
    info: Callable[..., DatasetInfo]  # (**options) -> DatasetInfo


_REGISTRY: dict[str, _Entry] = {}
# get_dataset options that dataset_info understands too.
_SHAPE_OPTIONS = {
    "synthetic": ("input_shape", "num_classes"),
    "digits": ("image_size", "flatten"),
    "imagefolder": ("image_size",),
    "tiny_imagenet": ("image_size",),
}
_ALIASES = {"tiny-imagenet": "tiny_imagenet", "cifar-10": "cifar10", "cifar-100": "cifar100"}


def _canonical(name: str) -> str:
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _REGISTRY:
        raise ConfigError(f"unknown dataset {name!r}; available: {', '.join(list_datasets())}")
    return key


def list_datasets() -> list[str]:
    """Registered dataset names, sorted."""
    return sorted(_REGISTRY)


def dataset_info(name: str, **options: Any) -> DatasetInfo:
    """Input shape, class count and normalisation of dataset ``name``, without loading
    it. ``options`` are those of :func:`get_dataset`; the ones that change the shape
    are used (``input_shape``/``num_classes`` for synthetic, ``image_size``/``flatten``
    for digits, ``image_size`` for image folders), the others ignored."""
    key = _canonical(name)
    return _REGISTRY[key].info(**_shape_options(key, options))


def get_dataset(
    name: str,
    root: Root = None,
    train: bool = True,
    augment: bool | None = None,
    download: bool = False,
    **options: Any,
) -> Dataset:
    """The ``train`` or test split of dataset ``name``.

    ``root`` is the data directory (default ``$PRUNEKIT_DATA``, else ``./data``).
    ``augment`` None means the dataset's default: random crop + flip for the training
    split of CIFAR and image folders, nothing otherwise; asking for augmentation
    on a dataset without one is a :class:`ConfigError`. With ``download``, missing
    MNIST/CIFAR files are fetched first (needs the network). ``options`` go to the
    dataset class (see :func:`dataset_info`).

    Example::

        train_set = get_dataset("mnist", root="/data", train=True)
        x, y = train_set[0]          # x: float (1, 28, 28), y: int
    """
    key = _canonical(name)
    entry = _REGISTRY[key]
    info = entry.info(**_shape_options(key, options))
    if augment and not info.augmentable:
        raise ConfigError(f"dataset {key!r} has no augmentation; use augment=False or None")
    try:
        return entry.build(root, train, augment, download, **options)
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            raise ConfigError(f"dataset {key!r}: {exc}") from exc
        raise


def _shape_options(key: str, options: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k in _SHAPE_OPTIONS.get(key, ())}


def _register(name: str, info: Callable[..., DatasetInfo]):
    def decorator(build: Callable[..., Dataset]) -> Callable[..., Dataset]:
        _REGISTRY[name] = _Entry(build, info)
        return build

    return decorator


def _download_then(name: str, make: Callable[[], Dataset], root: Root, download: bool) -> Dataset:
    try:
        return make()
    except DataNotFoundError:
        if not download:
            raise
    from prunekit.data.download import download_dataset

    download_dataset(name, root)
    return make()


def _fixed_info(**fields: Any) -> Callable[[], DatasetInfo]:
    return lambda: DatasetInfo(**fields)


@_register(
    "mnist",
    _fixed_info(
        name="mnist",
        input_shape=(1, 28, 28),
        num_classes=10,
        mean=MNIST_MEAN,
        std=MNIST_STD,
        downloadable=True,
        augmentable=False,
        description="MNIST digits from IDX files, 60000 train / 10000 test",
    ),
)
def _mnist(root: Root, train: bool, augment: bool | None, download: bool) -> Dataset:
    return _download_then("mnist", lambda: MNIST(root, train=train), root, download)


@_register(
    "cifar10",
    _fixed_info(
        name="cifar10",
        input_shape=(3, 32, 32),
        num_classes=10,
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
        downloadable=True,
        augmentable=True,
        description="CIFAR-10 python batches, 50000 train / 10000 test",
    ),
)
def _cifar10(root: Root, train: bool, augment: bool | None, download: bool) -> Dataset:
    return _download_then(
        "cifar10", lambda: CIFAR10(root, train=train, augment=augment), root, download
    )


@_register(
    "cifar100",
    _fixed_info(
        name="cifar100",
        input_shape=(3, 32, 32),
        num_classes=100,
        mean=CIFAR100_MEAN,
        std=CIFAR100_STD,
        downloadable=True,
        augmentable=True,
        description="CIFAR-100 python batches (fine labels), 50000 train / 10000 test",
    ),
)
def _cifar100(root: Root, train: bool, augment: bool | None, download: bool) -> Dataset:
    return _download_then(
        "cifar100", lambda: CIFAR100(root, train=train, augment=augment), root, download
    )


def _no_download(name: str, download: bool) -> None:
    if download:
        raise ConfigError(f"dataset {name!r} cannot be downloaded; place the files yourself")


def _imagefolder_info(image_size: int = 224) -> DatasetInfo:
    return DatasetInfo(
        name="imagefolder",
        input_shape=(3, image_size, image_size),
        num_classes=None,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        downloadable=False,
        augmentable=True,
        description="root/train/<class>/*, root/val/<class>/* (ImageNet layout)",
    )


@_register("imagefolder", _imagefolder_info)
def _imagefolder(
    root: Root, train: bool, augment: bool | None, download: bool, **options: Any
) -> Dataset:
    _no_download("imagefolder", download)
    return ImageFolderDataset(resolve_data_root(root), train=train, augment=augment, **options)


def _tiny_imagenet_info(image_size: int = 64) -> DatasetInfo:
    return DatasetInfo(
        name="tiny_imagenet",
        input_shape=(3, image_size, image_size),
        num_classes=200,
        mean=TINY_IMAGENET_MEAN,
        std=TINY_IMAGENET_STD,
        downloadable=False,
        augmentable=True,
        description="Tiny-ImageNet-200: train/<wnid>/images/*, val/images + val_annotations.txt",
    )


@_register("tiny_imagenet", _tiny_imagenet_info)
def _tiny_imagenet(
    root: Root, train: bool, augment: bool | None, download: bool, **options: Any
) -> Dataset:
    _no_download("tiny_imagenet", download)
    options = {
        "image_size": 64,
        "resize": None,
        "mean": TINY_IMAGENET_MEAN,
        "std": TINY_IMAGENET_STD,
        **options,
    }
    folder = tiny_imagenet_root(resolve_data_root(root))
    return ImageFolderDataset(folder, train=train, augment=augment, **options)


def _digits_info(image_size: int = 8, flatten: bool = False) -> DatasetInfo:
    return DatasetInfo(
        name="digits",
        input_shape=(image_size * image_size,) if flatten else (1, image_size, image_size),
        num_classes=10,
        mean=DIGITS_MEAN,
        std=DIGITS_STD,
        downloadable=False,
        augmentable=False,
        description="scikit-learn's bundled 8x8 digits (1797), stratified 80/20 split",
    )


@_register("digits", _digits_info)
def _digits(
    root: Root, train: bool, augment: bool | None, download: bool, **options: Any
) -> Dataset:
    return Digits(train=train, **options)  # bundled with scikit-learn: no files, no download


def _synthetic_info(input_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10) -> DatasetInfo:
    return DatasetInfo(
        name="synthetic",
        input_shape=tuple(input_shape),
        num_classes=num_classes,
        mean=None,
        std=None,
        downloadable=False,
        augmentable=False,
        description="deterministic Gaussian class clusters, for tests",
    )


@_register("synthetic", _synthetic_info)
def _synthetic(
    root: Root, train: bool, augment: bool | None, download: bool, **options: Any
) -> Dataset:
    return Synthetic(train=train, **options)
