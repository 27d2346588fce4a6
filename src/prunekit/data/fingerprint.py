"""A cheap fingerprint of what a dataset holds, so that results computed on other data
are never reused as if computed on this one (run cells put it in their settings hash).

In-memory datasets (MNIST, CIFAR, digits, synthetic) hash their decoded arrays: whole
up to :data:`WHOLE_LIMIT` bytes (MNIST's 47 MB take about 0.1 s), else evenly spaced
rows plus the shapes. Image folders hash every file's relative path and size and the
first bytes of evenly spaced files. ``Subset`` wrappers add their indices.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

WHOLE_LIMIT = 256 * 2**20  # bytes of an array hashed whole
SAMPLED_ROWS = 4096  # rows of a larger array that are hashed
HEAD_BYTES = 4096  # first bytes of each sampled image file
SAMPLED_FILES = 2000


def _update_array(digest, array: torch.Tensor) -> None:
    array = array.detach().cpu().contiguous()
    digest.update(f"{array.dtype}{tuple(array.shape)}".encode())
    if array.numel() * array.element_size() > WHOLE_LIMIT and array.dim() > 0:
        step = max(1, array.shape[0] // SAMPLED_ROWS)
        array = array[::step].contiguous()
    digest.update(np.ascontiguousarray(array.numpy()).view(np.uint8).reshape(-1).data)


def _update_files(digest, root: Path, paths: list[Path]) -> None:
    step = max(1, len(paths) // SAMPLED_FILES)
    for index, path in enumerate(paths):
        try:
            size = path.stat().st_size
        except OSError:
            size = -1
        digest.update(
            f"{path.relative_to(root) if path.is_relative_to(root) else path}:{size};".encode()
        )
        if index % step == 0 and size > 0:
            with open(path, "rb") as handle:
                digest.update(handle.read(HEAD_BYTES))


def dataset_fingerprint(*datasets: Dataset) -> str:
    """A short hex digest of the contents of ``datasets`` (see the module docstring)."""
    digest = hashlib.sha256()
    for dataset in datasets:
        while isinstance(dataset, Subset):
            digest.update(np.asarray(dataset.indices, dtype=np.int64).tobytes())
            dataset = dataset.dataset
        digest.update(type(dataset).__name__.encode())
        data, targets = getattr(dataset, "data", None), getattr(dataset, "targets", None)
        paths = getattr(dataset, "paths", None)
        if isinstance(data, torch.Tensor) and isinstance(targets, torch.Tensor):
            _update_array(digest, data)
            _update_array(digest, targets)
        elif isinstance(paths, list):
            _update_files(digest, Path(getattr(dataset, "root", "/")), [Path(p) for p in paths])
        else:  # an unknown kind of dataset: its length at least
            digest.update(str(len(dataset)).encode())  # type: ignore[arg-type]
    return digest.hexdigest()[:16]
