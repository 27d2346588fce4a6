"""Fuzzing the MNIST IDX and CIFAR readers and the checkpoint importer with seeded random
corruptions (bit flips, truncation, zeroed runs) of real-format files: each read either
succeeds or raises a ``PrunekitError``; nothing else escapes, nothing crashes."""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from _reliability import cifar_folder, mlpnet_state, mnist_folder, save

from prunekit.checkpoints import read_foreign_checkpoint
from prunekit.data import CIFAR10, MNIST
from prunekit.errors import PrunekitError
from prunekit.masks import load_mask
from prunekit.training import load_checkpoint

ROUNDS = 200


def corrupt(data: bytes, rng: random.Random) -> bytes:
    """One random corruption: flipped bits, a truncation, or a zeroed run of bytes."""
    data = bytearray(data)
    kind = rng.choice(["flip", "truncate", "zero"])
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
    elif kind == "truncate":
        data = data[: rng.randrange(len(data))]
    else:
        start = rng.randrange(len(data))
        data[start : start + rng.randint(1, 64)] = bytes(min(64, len(data) - start))
    return bytes(data)


def fuzz(pristine: Path, victims: list[Path], read: Callable[[], object], seed: int) -> dict:
    """Corrupt one victim file at a time (restored after each round) and read."""
    rng = random.Random(seed)
    originals = {path: path.read_bytes() for path in victims}
    outcomes = {"read": 0, "refused": 0}
    for _ in range(ROUNDS):
        victim = rng.choice(victims)
        victim.write_bytes(corrupt(originals[victim], rng))
        try:
            read()
            outcomes["read"] += 1
        except PrunekitError as exc:
            assert "\n" not in str(exc), str(exc)
            outcomes["refused"] += 1
        finally:
            victim.write_bytes(originals[victim])
    assert pristine.exists()
    return outcomes


@pytest.mark.parametrize("gz", [False, True], ids=["idx", "idx.gz"])
def test_mnist_reader_under_corruption(tmp_path, gz):
    folder = mnist_folder(tmp_path / "mnist", n_train=4, n_test=6, gz=gz)
    victims = sorted(folder.glob("t10k-*"))
    outcomes = fuzz(folder, victims, lambda: MNIST(folder, train=False), seed=1 + gz)
    assert outcomes["refused"] > 0


def test_cifar_reader_under_corruption(tmp_path):
    folder = cifar_folder(tmp_path)
    outcomes = fuzz(folder, [folder / "test_batch"], lambda: CIFAR10(tmp_path, train=False), 3)
    assert outcomes["refused"] > 0


def test_checkpoint_importer_under_corruption(tmp_path):
    state = {f"module.{k.replace('.', '._layer.')}": v for k, v in mlpnet_state().items()}
    mask = {"module.fc1._weight_mask": torch.ones(40, 784)}
    path = save({"model_state_dict": {**state, **mask}, "epoch": 2}, tmp_path / "wf.ckpt")
    legacy = tmp_path / "legacy.ckpt"
    torch.save({"model_state_dict": state}, legacy, _use_new_zipfile_serialization=False)
    for seed, victim in enumerate([path, legacy]):
        outcomes = fuzz(victim, [victim], lambda v=victim: read_foreign_checkpoint(v), 10 + seed)
        assert outcomes["refused"] > 0


def test_masks_and_training_checkpoints_under_corruption(tmp_path):
    mask = save({"fc1.weight": torch.ones(4, 3, dtype=torch.bool)}, tmp_path / "mask.pt")
    fuzz(mask, [mask], lambda: load_mask(mask), seed=20)
    copy = shutil.copy(mask, tmp_path / "checkpoint.pt")
    fuzz(Path(copy), [Path(copy)], lambda: load_checkpoint(copy), seed=21)
