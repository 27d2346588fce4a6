"""MNIST from the original IDX files (plain or gzipped).

IDX layout: two zero bytes, a type code (0x08 = unsigned byte), the number of
dimensions, one big-endian int32 per dimension, then the values in row-major order.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from prunekit.data.base import InMemoryDataset
from prunekit.data.paths import find_file, find_folder_with, missing_files_error, resolve_data_root
from prunekit.errors import DataError

# pixels / 255, then the MNIST mean and std (the CBS / WoodFisher MLPNet preprocessing).
MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)

MNIST_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

_IDX_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise DataError(f"cannot read IDX file {path}: {exc} (corrupt or truncated?)") from exc


def read_idx(path: str | os.PathLike[str], expected_ndim: int | None = None) -> np.ndarray:
    """The array stored in IDX file ``path`` (``.gz`` is decompressed).

    Raises :class:`DataError` naming the file when the magic number, the number
    of dimensions or the payload length is wrong.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise DataError(f"IDX file {path} is truncated: {len(raw)} bytes, no header")
    zero, type_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or type_code not in _IDX_TYPES:
        raise DataError(
            f"{path} is not an IDX file: bad magic number 0x{raw[:4].hex()} "
            "(expected 0x0000 then a type code and a dimension count)"
        )
    if expected_ndim is not None and ndim != expected_ndim:
        raise DataError(f"IDX file {path} has {ndim} dimensions, expected {expected_ndim}")
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise DataError(f"IDX file {path} is truncated inside its header")
    dims = struct.unpack(f">{ndim}I", raw[4:header_len])
    dtype = _IDX_TYPES[type_code]
    expected = math.prod(dims) * dtype.itemsize  # Python ints: a huge header cannot overflow
    payload = len(raw) - header_len
    if payload != expected:
        problem = "truncated" if payload < expected else "longer than its header says"
        raise DataError(
            f"IDX file {path} is {problem}: header gives shape {dims} "
            f"({expected} bytes of data), file has {payload}"
        )
    array = np.frombuffer(raw, dtype=dtype, offset=header_len).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=True)


def read_idx_pair(images_path: Path, labels_path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images ``(N, 1, H, W)`` and long labels ``(N,)``, checked against each other."""
    images = read_idx(images_path, expected_ndim=3)
    labels = read_idx(labels_path, expected_ndim=1)
    if images.dtype != np.uint8 or labels.dtype != np.uint8:
        raise DataError(f"{images_path} / {labels_path}: expected unsigned-byte IDX files")
    if images.shape[1:] != (28, 28):
        raise DataError(
            f"{images_path} holds {images.shape[1]}×{images.shape[2]} images; MNIST images "
            "are 28×28 (is this another data set?)"
        )
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"count mismatch: {images_path} holds {images.shape[0]} images but "
            f"{labels_path} holds {labels.shape[0]} labels"
        )
    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels).to(torch.long)


def mnist_search_folders(root: Path) -> list[Path]:
    """Folders searched for MNIST files: ``root``, ``root/mnist``, ``root/MNIST/raw``."""
    return [root, root / "mnist", root / "MNIST" / "raw"]


def locate_mnist(root: str | os.PathLike[str] | None, train: bool) -> tuple[Path, Path]:
    """Paths of the images and labels files for the split, or :class:`DataNotFoundError`."""
    base = resolve_data_root(root)
    names = MNIST_FILES[train]
    folders = mnist_search_folders(base)
    folder = find_folder_with(folders, names, allow_gz=True)
    if folder is None:
        shown = [f"{name}(.gz)" for name in names]
        raise missing_files_error("MNIST", shown, folders, base / "mnist", downloadable=True)
    images, labels = (find_file(folder, name, allow_gz=True) for name in names)
    assert images is not None and labels is not None
    return images, labels


class MNIST(InMemoryDataset):
    """MNIST digits: items are ``(float (1, 28, 28), label)``, normalised as
    ``(x / 255 - 0.1307) / 0.3081``. Models that need vectors flatten themselves.

    ``root`` is the folder holding the IDX files, or a parent with ``mnist/`` or
    ``MNIST/raw/`` inside (default: the data directory, see :func:`resolve_data_root`).
    """

    def __init__(self, root: str | os.PathLike[str] | None = None, train: bool = True) -> None:
        images_path, labels_path = locate_mnist(root, train)
        images, labels = read_idx_pair(images_path, labels_path)
        super().__init__(images, labels, MNIST_MEAN, MNIST_STD, classes=[str(d) for d in range(10)])
        if len(labels) and int(labels.max()) >= 10:
            raise DataError(f"{labels_path} holds label {int(labels.max())}; MNIST has 0-9")
        self.train = train
        self.files = (images_path, labels_path)
