"""The pruning-at-initialisation methods by name, and one entry point to a mask."""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from torch import Tensor, nn

from prunekit.errors import ConfigError
from prunekit.masks import Mask
from prunekit.methods.init._common import BatchesLike, as_batches
from prunekit.methods.init.grasp import grasp_scores
from prunekit.methods.init.iterative import prune_iteratively
from prunekit.methods.init.magnitude import magnitude_scores
from prunekit.methods.init.random import random_scores
from prunekit.methods.init.snip import snip_scores
from prunekit.methods.init.synflow import synflow_scores
from prunekit.methods.scores import Scores


@dataclass(frozen=True)
class InitMethod:
    """A scoring method: its function, what data it takes, its default rounds."""

    name: str
    score: Callable[..., Scores]
    needs: Literal["nothing", "batches", "input_shape"]
    default_rounds: int = 1


INIT_METHODS: dict[str, InitMethod] = {
    m.name: m
    for m in (
        InitMethod("random", random_scores, "nothing"),
        InitMethod("magnitude", magnitude_scores, "nothing"),
        InitMethod("snip", snip_scores, "batches"),
        InitMethod("grasp", grasp_scores, "batches"),
        InitMethod("synflow", synflow_scores, "input_shape", default_rounds=100),
    )
}


def get_init_method(name: str) -> InitMethod:
    """The method registered as ``name`` (case-insensitive); ConfigError listing the names."""
    method = INIT_METHODS.get(str(name).lower())
    if method is None:
        close = difflib.get_close_matches(str(name).lower(), INIT_METHODS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"unknown pruning-at-init method {name!r}{hint}; known: {', '.join(INIT_METHODS)}"
        )
    return method


def _input_shape(model: nn.Module, data: BatchesLike | None) -> tuple[int, ...]:
    if data is not None:
        inputs = as_batches(data)[0][0]
        return tuple(inputs.shape[1:])
    shape = getattr(model, "default_input_shape", None)
    if shape is None:
        raise ConfigError(
            "synflow needs input_shape=(C, H, W): pass it, or data, or use a model "
            "with a default_input_shape"
        )
    return tuple(shape)


def score_and_mask(
    method_name: str,
    model: nn.Module,
    sparsity: float | Mapping[str, float],
    data: BatchesLike | None = None,
    rounds: int | None = None,
    scope: str = "global",
    params: Iterable[str] | Mapping[str, Tensor] | None = None,
    previous: Mask | None = None,
    **method_kwargs: Any,
) -> Mask:
    """Score ``model`` with a named method and return the mask at ``sparsity``.

    ``data`` is an iterable of ``(inputs, targets)`` batches or one pair: SNIP and
    GraSP score on it; SynFlow only takes the input shape from it (or from
    ``input_shape=`` in ``method_kwargs``, or the model's ``default_input_shape``);
    random and magnitude ignore it. ``rounds`` defaults to the method's own (100 for
    SynFlow, 1 for the others); see ``prune_iteratively``. ``method_kwargs`` go to
    the scoring function (``temperature=``, ``generator=``, ``chunk_size=``...).
    Weights removed in ``previous`` stay removed.

    Example::

        mask = score_and_mask("grasp", model, 0.98, data=batches)
    """
    method = get_init_method(method_name)
    kwargs = dict(method_kwargs)
    if method.needs == "batches":
        if data is None:
            raise ConfigError(f"{method.name} scores on data: pass data=(inputs, targets)")
        chunks = as_batches(data)
        score_fn = functools.partial(method.score, batches=chunks, **kwargs)
    elif method.needs == "input_shape":
        shape = kwargs.pop("input_shape", None) or _input_shape(model, data)
        score_fn = functools.partial(method.score, input_shape=shape, **kwargs)
    else:
        score_fn = functools.partial(method.score, **kwargs)
    return prune_iteratively(
        lambda m, names: score_fn(m, params=names),
        model,
        sparsity,
        rounds=method.default_rounds if rounds is None else rounds,
        scope=scope,
        params=params,
        previous=previous,
    )
