"""CIFAR-10 and CIFAR-100 from the official python-pickle batches.

The batches are pickles, and unpickling runs whatever callables a file names. They
are therefore read with :class:`SafeUnpickler`, which resolves only the numpy
functions that rebuild an array; any other global (``os.system``, ``builtins.eval``...)
is refused with an error.
"""

from __future__ import annotations

import importlib
import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prunekit.data.base import InMemoryDataset
from prunekit.data.paths import find_folder_with, missing_files_error, resolve_data_root
from prunekit.errors import DataError

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR100_FOLDER = "cifar-100-python"
CIFAR10_FILES = {
    True: tuple(f"data_batch_{i}" for i in range(1, 6)),
    False: ("test_batch",),
}
CIFAR100_FILES = {True: ("train",), False: ("test",)}


def _numpy_global(module: str, name: str) -> Any:
    # numpy 2 moved numpy.core to numpy._core; pickles may name either.
    for candidate in (module.replace("numpy.core", "numpy._core"), module):
        try:
            return getattr(importlib.import_module(candidate), name)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"numpy has no {module}.{name}")


# The globals a pickled numpy array needs, in the spellings of numpy 1.x and 2.x:
# _reconstruct/ndarray/dtype (protocols 0-4) and _frombuffer (protocol 5).
_ALLOWED_GLOBALS = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
    }
)


def _latin1_encode(text: Any, encoding: str = "utf-8") -> bytes:
    # Python 3 writes bytes at protocols 0-2 as _codecs.encode(str, "latin1");
    # only that exact use is allowed.
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError("refused _codecs.encode other than str → latin1 bytes")
    return text.encode("latin1")


class SafeUnpickler(pickle.Unpickler):
    """An unpickler for data files: plain containers, numbers, strings, bytes and
    numpy arrays. Every other global a pickle names is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return _numpy_global(module, name)
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        raise pickle.UnpicklingError(
            f"refused to load global {module}.{name}: data files may only hold numpy arrays"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refused persistent id in a data file")


def safe_load_pickle(path: str | os.PathLike[str]) -> Any:
    """Unpickle ``path`` with :class:`SafeUnpickler` (Python 2 strings read as latin-1,
    as numpy requires). Any failure becomes a :class:`PrunekitError` naming the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
        return SafeUnpickler(io.BytesIO(data), encoding="latin1").load()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - unpickling fails in many ways
        raise DataError(f"cannot load pickle {path}: {exc}") from exc


def _get(batch: dict, key: str, path: Path) -> Any:
    # Python 2 pickles read as latin-1 give str keys; Python 3 ones keep bytes keys.
    for candidate in (key, key.encode()):
        if candidate in batch:
            return batch[candidate]
    keys = sorted(k.decode() if isinstance(k, bytes) else str(k) for k in batch)
    raise DataError(f"{path} has no '{key}' entry (keys: {', '.join(keys)})")


def read_cifar_batch(path: Path, label_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images ``(N, 3, 32, 32)`` and long labels from one pickled batch."""
    batch = safe_load_pickle(path)
    if not isinstance(batch, dict):
        raise DataError(f"{path} does not hold a CIFAR batch (a dict), got {type(batch)}")
    data = _get(batch, "data", path)
    labels = _get(batch, label_key, path)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise DataError(f"{path}: 'data' must be a uint8 array (N, 3072)")
    if data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: 'data' rows have {data.shape[1]} values, expected 3072")
    try:
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}: '{label_key}' is not a list of integers") from exc
    if labels.shape[0] != data.shape[0]:
        raise DataError(
            f"count mismatch in {path}: {data.shape[0]} images but {labels.shape[0]} labels"
        )
    images = torch.from_numpy(np.ascontiguousarray(data).reshape(-1, 3, 32, 32).copy())
    return images, torch.from_numpy(labels)


def _read_label_names(path: Path, key: str, count: int) -> list[str]:
    if path.is_file():
        names = _get(safe_load_pickle(path), key, path)
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
        if len(names) == count:
            return names
    return [str(i) for i in range(count)]


class _CIFAR(InMemoryDataset):
    name: str
    folder: str
    files: dict[bool, tuple[str, ...]]
    label_key: str
    meta_file: str
    meta_key: str
    classes_count: int
    stats: tuple[tuple[float, ...], tuple[float, ...]]

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        train: bool = True,
        augment: bool | None = None,
    ) -> None:
        base = resolve_data_root(root)
        names = self.files[train]
        searched = [base / self.folder, base]
        folder = find_folder_with(searched, names)
        if folder is None:
            raise missing_files_error(
                self.name, names, searched, base / self.folder, downloadable=True
            )
        parts = [read_cifar_batch(folder / name, self.label_key) for name in names]
        images = torch.cat([p[0] for p in parts])
        labels = torch.cat([p[1] for p in parts])
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= self.classes_count):
            raise DataError(f"{folder}: labels outside 0..{self.classes_count - 1} for {self.name}")
        classes = _read_label_names(folder / self.meta_file, self.meta_key, self.classes_count)
        mean, std = self.stats
        super().__init__(
            images,
            labels,
            mean,
            std,
            classes=classes,
            augment=train if augment is None else augment,
        )
        self.train = train
        self.folder_path = folder


class CIFAR10(_CIFAR):
    """CIFAR-10 from ``cifar-10-batches-py/`` (``data_batch_1..5``, ``test_batch``).

    Items are ``(float (3, 32, 32), label)`` normalised with the CIFAR-10 mean and
    std. ``augment`` (default: on for the training split) applies a random 32x32 crop
    after zero padding by 4 and a random horizontal flip. ``root`` is the folder with
    the batches or its parent.
    """

    name = "CIFAR-10"
    folder = CIFAR10_FOLDER
    files = CIFAR10_FILES
    label_key = "labels"
    meta_file = "batches.meta"
    meta_key = "label_names"
    classes_count = 10
    stats = (CIFAR10_MEAN, CIFAR10_STD)


class CIFAR100(_CIFAR):
    """CIFAR-100 from ``cifar-100-python/`` (``train``, ``test``), fine labels (100
    classes), normalised with the CIFAR-100 mean and std; augmentation as CIFAR10."""

    name = "CIFAR-100"
    folder = CIFAR100_FOLDER
    files = CIFAR100_FILES
    label_key = "fine_labels"
    meta_file = "meta"
    meta_key = "fine_label_names"
    classes_count = 100
    stats = (CIFAR100_MEAN, CIFAR100_STD)
