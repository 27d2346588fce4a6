"""The keyword arguments each scoring method takes from a run's settings."""

from __future__ import annotations

import torch


def init_method_options(
    method: str, seed: int, temperature: float = 200.0, reinit_linear_xavier: bool = False
) -> dict:
    """GraSP's temperature and Xavier option; a generator seeded with ``seed`` for
    random; nothing for the others."""
    if method == "grasp":
        return {"temperature": temperature, "reinit_linear_xavier": reinit_linear_xavier}
    if method == "random":
        return {"generator": torch.Generator().manual_seed(seed)}
    return {}
