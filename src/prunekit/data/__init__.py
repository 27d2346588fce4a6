"""Datasets, transforms, class-balanced sampling, seeded loaders and downloads.

Start with :func:`get_dataset`; every dataset yields ``(input float tensor, int label)``
and exposes its labels as a ``targets`` LongTensor, ``classes``, ``num_classes`` and
``input_shape``.
"""

from prunekit.data.base import InMemoryDataset
from prunekit.data.cifar import CIFAR10, CIFAR100, SafeUnpickler, safe_load_pickle
from prunekit.data.digits import Digits
from prunekit.data.imagefolder import ImageFolderDataset
from prunekit.data.loader import make_loader
from prunekit.data.mnist import MNIST, read_idx
from prunekit.data.paths import resolve_data_root
from prunekit.data.registry import DatasetInfo, dataset_info, get_dataset, list_datasets
from prunekit.data.sampler import class_balanced_batches, class_balanced_indices, dataset_targets
from prunekit.data.synthetic import Synthetic

__all__ = [
    "CIFAR10",
    "CIFAR100",
    "MNIST",
    "DatasetInfo",
    "Digits",
    "ImageFolderDataset",
    "InMemoryDataset",
    "SafeUnpickler",
    "Synthetic",
    "class_balanced_batches",
    "class_balanced_indices",
    "dataset_info",
    "dataset_targets",
    "get_dataset",
    "list_datasets",
    "make_loader",
    "read_idx",
    "resolve_data_root",
    "safe_load_pickle",
]
