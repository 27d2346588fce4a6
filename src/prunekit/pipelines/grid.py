"""The (method, sparsity, seed) grid of a call: validated, each entry once."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from prunekit.errors import ConfigError
from prunekit.masks import check_sparsity

T = TypeVar("T")


def unique(values: Iterable[T], what: str, canonical: Callable[[T], object] = lambda v: v) -> list:
    """``values`` in order, each checked by ``canonical``; a value given twice (in any
    spelling that ``canonical`` maps to the same thing) is an error, never counted twice."""
    seen: dict[object, T] = {}
    out = []
    for value in values:
        key = canonical(value)
        if key in seen:
            raise ConfigError(
                f"{what} {value!r} is given twice"
                + (f" (same as {seen[key]!r})" if seen[key] != value else "")
                + "; give each once"
            )
        seen[key] = value
        out.append(key)
    return out


def check_grid(
    methods: Sequence[str],
    sparsities: Sequence[float],
    seeds: Sequence[int],
    canonical_method: Callable[[str], str],
) -> tuple[list[str], list[float], list[int]]:
    """Canonical method names, checked sparsities and seeds, each given once."""
    if not methods:
        raise ConfigError("give at least one method")
    if not sparsities:
        raise ConfigError("give at least one sparsity")
    if not seeds:
        raise ConfigError("give at least one seed")
    return (
        unique(methods, "method", canonical_method),
        unique(sparsities, "sparsity", check_sparsity),
        unique(seeds, "seed", int),
    )
