"""Random scores: the baseline that removes weights uniformly at random."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor, nn

from prunekit.methods.init._common import resolve_params
from prunekit.methods.scores import Scores


def random_scores(
    model: nn.Module,
    params: Iterable[str] | Mapping[str, Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> Scores:
    """Uniform noise in [0, 1) per weight; the lowest are removed.

    Globally this removes a uniformly random set of weights; with
    ``scope="layerwise"`` each layer keeps the same density. Pass a seeded
    ``torch.Generator`` (on CPU) for a reproducible mask: the same seed gives the
    same mask bit for bit. The model is not used except for parameter shapes.

    Example::

        g = torch.Generator().manual_seed(0)
        mask = random_scores(model, generator=g).to_mask(0.9)
    """
    values = {
        name: torch.rand(p.shape, generator=generator, dtype=torch.float64)
        for name, p in resolve_params(model, params).items()
    }
    return Scores(values=values, remove="lowest")
