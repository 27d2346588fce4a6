"""Magnitude scores: remove the smallest weights."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from torch import Tensor, nn

from prunekit.methods.init._common import resolve_params
from prunekit.methods.scores import Scores


def magnitude_scores(
    model: nn.Module, params: Iterable[str] | Mapping[str, Tensor] | None = None
) -> Scores:
    """``|θ|`` per weight; the lowest are removed.

    At initialisation this mostly follows each layer's init scale, so a global
    ranking prunes the widest layers (smallest init std) hardest.
    """
    values = {n: p.detach().abs().clone() for n, p in resolve_params(model, params).items()}
    return Scores(values=values, remove="lowest")
