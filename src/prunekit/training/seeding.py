"""Seeding, and capturing/restoring random-number-generator state for resumes.

RNG states are stored as tensors and plain numbers only, so a checkpoint holding
them loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

import numpy as np
import torch

from prunekit.errors import CheckpointError


def seed_everything(seed: int, deterministic: bool = False) -> torch.Generator:
    """Seed python ``random``, numpy and torch (CPU and CUDA) with ``seed``.

    Returns a fresh ``torch.Generator`` seeded with ``seed``, meant for the data order
    (``DataLoader(..., shuffle=True, generator=g)``). With ``deterministic``, torch is
    also asked for deterministic kernels (slower on GPUs).
    """
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def get_rng_state(generators: Iterable[torch.Generator] = ()) -> dict:
    """State of python ``random``, numpy, torch (CPU, CUDA) and the given generators."""
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": {
            "version": version,
            "state": torch.tensor(mt, dtype=torch.int64),
            "gauss": gauss,
        },
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generators": [g.get_state() for g in generators],
    }


def set_rng_state(state: dict, generators: Iterable[torch.Generator] = ()) -> None:
    """Restore a state from :func:`get_rng_state` (same generators, same order)."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state(
        (
            npy["kind"],
            npy["keys"].numpy().astype(np.uint32),
            npy["pos"],
            npy["has_gauss"],
            npy["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    generators = list(generators)
    if len(generators) != len(state["generators"]):
        raise CheckpointError(
            f"the checkpoint holds {len(state['generators'])} data-order generator state(s) "
            f"but the data loader has {len(generators)}; resume with the same kind of loader"
        )
    for g, s in zip(generators, state["generators"], strict=True):
        g.set_state(s)
