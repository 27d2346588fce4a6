"""The (method, sparsity, seed) grid of a call: validated, each entry once."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from prunekit.errors import ConfigError
from prunekit.masks import check_sparsity, count_to_remove

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


def requested_sparsities(
    given: Sequence[float] | None,
    default: Sequence[float],
    pattern: str | None,
    fits_pattern: Callable[[float], bool],
    pattern_sparsity: str,
) -> list[float]:
    """The sparsities of a call: ``given``, else ``default``. With an N:M ``pattern`` the
    pattern fixes the sparsity: given sparsities are refused unless they are that one
    sparsity (``fits_pattern``), never dropped silently."""
    if pattern is None:
        return list(default if given is None else given)
    if given is not None and not (len(given) == 1 and fits_pattern(given[0])):
        shown = " ".join(f"{s:g}" for s in given)
        raise ConfigError(
            f"--pattern {pattern} fixes the sparsity ({pattern_sparsity}); --sparsities "
            f"{shown} cannot be run with it: give the pattern or the sparsities, not both"
        )
    return list(given or [])


def check_distinct_counts(sparsities: Sequence[float], total: int) -> list[int]:
    """The removal count round(s·d) of each sparsity; two sparsities with the same count
    would compute the same cell twice and are refused."""
    seen: dict[int, float] = {}
    for sparsity in sparsities:
        count = count_to_remove(sparsity, total)
        if count in seen:
            raise ConfigError(
                f"sparsities {seen[count]!r} and {sparsity!r} both remove {count} of the "
                f"{total} prunable weights (round(s·d)): the same cell twice; give one of them"
            )
        seen[count] = sparsity
    return list(seen)


def check_distinct_methods(methods: Sequence[str], parts: Callable[[str], tuple]) -> None:
    """Two names of the same method (a preset beside its own ``selection+update`` pair,
    ``woodfisher`` and ``obs+woodfisher``) would compute the same cells twice: refused."""
    seen: dict[tuple, str] = {}
    for method in methods:
        key = parts(method)
        if key in seen:
            raise ConfigError(
                f"methods {seen[key]!r} and {method!r} are the same method "
                f"({'+'.join(map(str, key))}): give it once"
            )
        seen[key] = method
