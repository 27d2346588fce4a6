"""Writers of tiny files in the real dataset formats."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array: 0x0000, type 0x08, ndim, big-endian dims, data."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    data = idx_bytes(array)
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as handle:
            handle.write(data)
    else:
        path.write_bytes(data)
    return path


def write_mnist(folder: Path, n_train: int = 20, n_test: int = 10, gz: bool = False, seed=0):
    """Random MNIST-format files; returns {split: (images, labels)} as numpy arrays."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    arrays = {}
    for prefix, n, train in (("train", n_train, True), ("t10k", n_test, False)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
        arrays[train] = (images, labels)
    return arrays


def write_cifar10(folder: Path, per_batch: int = 6, seed: int = 0):
    """cifar-10-batches-py with 5 train batches and a test batch, as the official
    files: dicts with b'data' uint8 (N, 3072) and b'labels' a list of ints."""
    rng = np.random.default_rng(seed)
    folder = folder / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    arrays = {True: [], False: []}
    names = [(f"data_batch_{i}", True) for i in range(1, 6)] + [("test_batch", False)]
    for name, train in names:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=per_batch)]
        batch = {b"batch_label": name.encode(), b"labels": labels, b"data": data}
        (folder / name).write_bytes(pickle.dumps(batch))
        arrays[train].append((data, labels))
    meta = {b"label_names": [f"class{i}".encode() for i in range(10)], b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    return folder, arrays


def write_cifar100(folder: Path, n: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    folder = folder / "cifar-100-python"
    folder.mkdir(parents=True)
    arrays = {}
    for name, train in (("train", True), ("test", False)):
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        fine = [int(v) for v in rng.integers(0, 100, size=n)]
        batch = {
            b"filenames": [b"x.png"] * n,
            b"fine_labels": fine,
            b"coarse_labels": [f // 5 for f in fine],
            b"data": data,
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=5))
        arrays[train] = (data, fine)
    return folder, arrays


@pytest.fixture
def formats():
    """The writers, as a namespace."""

    class Writers:
        pass

    for fn in (idx_bytes, write_idx, write_mnist, write_cifar10, write_cifar100):
        setattr(Writers, fn.__name__, staticmethod(fn))
    return Writers
