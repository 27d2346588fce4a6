"""Helpers of the reliability suite: tiny real-format files, the CLI runner, the
one-line error check and file hashes before/after."""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import torch

from prunekit.cli.main import main
from prunekit.models import create_model

SYNTHETIC = ["--dataset", "synthetic", "--dataset-kwargs", "{num_samples: 40}"]
QUICK = ["--model", "mlpnet", *SYNTHETIC, "--no-progress", "--batch-size", "20"]


class Evil:
    """Pickles to a call of os.system: a file holding it must be refused, never run."""

    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of a uint8 array (magic 0x0000, type 0x08, ndim, big-endian dims)."""
    head = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return head + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def mnist_folder(root: Path, n_train=30, n_test=20, size=28, gz=False, train=True) -> Path:
    """MNIST-format files with random pixels; ``train=False`` writes the test split only."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    splits = [("t10k", n_test)] + ([("train", n_train)] if train else [])
    for prefix, n in splits:
        files = {
            f"{prefix}-images-idx3-ubyte": rng.integers(0, 256, (n, size, size), dtype=np.uint8),
            f"{prefix}-labels-idx1-ubyte": (np.arange(n) % 10).astype(np.uint8),
        }
        for name, array in files.items():
            data = idx_bytes(array)
            if gz:
                (root / f"{name}.gz").write_bytes(gzip.compress(data, mtime=0))
            else:
                (root / name).write_bytes(data)
    return root


def cifar_folder(root: Path, per_batch: int = 4) -> Path:
    """cifar-10-batches-py with the official pickle layout."""
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"labels": [int(v) for v in rng.integers(0, 10, per_batch)],
            b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    return folder


def mlpnet_state(**changes) -> dict:
    state = {k: v.clone() for k, v in create_model("mlpnet").state_dict().items()}
    state.update(changes)
    return state


def save(obj, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)
    return path


def run_cli(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def error_line(err: str) -> str:
    """The last non-empty stderr line, after checking there is no traceback."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines, "no error message on stderr"
    return lines[-1]


def hashes(root: Path) -> dict[str, str]:
    """sha256 of every file below ``root`` (the lock file aside)."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name != ".prunekit.lock":
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def assert_unchanged(before: dict[str, str], root: Path) -> None:
    after = hashes(root)
    changed = [name for name, digest in before.items() if after.get(name) != digest]
    assert not changed, f"files written earlier were changed or removed: {changed}"


def export_file(path: Path, edit=None) -> Path:
    """A ``prunekit export`` of a fresh MLPNet (fc1 half pruned); ``edit(tensors, layout)``
    may corrupt the tensors or the layout before the file is written."""
    import json

    from safetensors.torch import save_file

    from prunekit.deploy.export import FORMAT, FORMAT_VERSION, export_tensors
    from prunekit.masks import Mask

    model = create_model("mlpnet")
    keep = torch.arange(40 * 784).reshape(40, 784) % 2 == 0
    tensors, layout = export_tensors(model, Mask({"fc1.weight": keep}))
    if edit is not None:
        edit(tensors, layout)
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "model": "mlpnet",
        "model_kwargs": "{}",
        "num_classes": "10",
        "layout": json.dumps(layout),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)
    return path


def temp_files_on_a_full_disk(mp, files_module, suffix: str = ".pt.") -> None:
    """Make the atomic writer's temporary files whose prefix ends with ``suffix`` links
    to /dev/full, where every write fails with ENOSPC, as on a full disk."""
    real = files_module.tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        fd, path = real(*args, **kwargs)
        if str(kwargs.get("prefix", "")).endswith(suffix):
            os.close(fd)
            os.unlink(path)
            os.symlink("/dev/full", path)
            fd = os.open(path, os.O_WRONLY)
        return fd, path

    mp.setattr(files_module.tempfile, "mkstemp", mkstemp)
