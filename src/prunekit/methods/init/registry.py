"""The pruning-at-initialisation methods by name, and one entry point to a mask."""

from __future__ import annotations

import difflib
import functools
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from torch import Tensor, nn

from prunekit.errors import ConfigError
from prunekit.masks import Mask, nm_mask, nm_patterned, parse_pattern
from prunekit.methods.init._common import BatchesLike, as_batches, resolve_params
from prunekit.methods.init.grasp import grasp_scores
from prunekit.methods.init.iterative import prune_iteratively
from prunekit.methods.init.magnitude import magnitude_scores
from prunekit.methods.init.random import random_scores
from prunekit.methods.init.snip import snip_scores
from prunekit.methods.init.synflow import synflow_scores
from prunekit.methods.scores import Scores

logger = logging.getLogger(__name__)


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
    sparsity: float | Mapping[str, float] | None,
    data: BatchesLike | None = None,
    rounds: int | None = None,
    scope: str = "global",
    params: Iterable[str] | Mapping[str, Tensor] | None = None,
    previous: Mask | None = None,
    pattern: str | None = None,
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

    ``pattern="N:M"`` keeps the N best of every M consecutive weights along each row's
    input dimension (``prunekit.masks.nm_mask``) instead of ranking at ``scope``:
    scores are computed once (one round), the patterned tensors' sparsity is 1 − N/M,
    tensors whose input dimension is not a multiple of M stay dense, and ``sparsity``
    must be None or 1 − N/M.

    Example::

        mask = score_and_mask("grasp", model, 0.98, data=batches)
        mask = score_and_mask("snip", model, None, data=batches, pattern="2:4")
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
    if pattern is not None:
        return _patterned_mask(score_fn, model, sparsity, rounds, params, pattern)
    if sparsity is None:
        raise ConfigError("give a sparsity (fraction of prunable weights removed) or a pattern")
    return prune_iteratively(
        lambda m, names: score_fn(m, params=names),
        model,
        sparsity,
        rounds=method.default_rounds if rounds is None else rounds,
        scope=scope,
        params=params,
        previous=previous,
    )


def _patterned_mask(
    score_fn: Callable[..., Scores],
    model: nn.Module,
    sparsity: float | Mapping[str, float] | None,
    rounds: int | None,
    params: Iterable[str] | Mapping[str, Tensor] | None,
    pattern: str,
) -> Mask:
    n, m = parse_pattern(pattern)
    if sparsity is not None and (
        isinstance(sparsity, Mapping) or abs(float(sparsity) - (1 - n / m)) > 1e-9
    ):
        raise ConfigError(
            f"the {n}:{m} pattern fixes the sparsity of the patterned layers at {1 - n / m:g}; "
            "give sparsity=None or that value"
        )
    if rounds is not None and rounds != 1:
        raise ConfigError(f"an N:M pattern is chosen in one round of scoring, got rounds={rounds}")
    names = list(resolve_params(model, params))
    scores = score_fn(model, params=names)
    dense = [name for name in names if not nm_patterned(scores.values[name].shape, m)]
    if dense:
        logger.warning("%s cannot carry the %d:%d pattern and stay dense", dense, n, m)
    return nm_mask({name: scores.values[name] for name in names}, (n, m), scores.remove)
