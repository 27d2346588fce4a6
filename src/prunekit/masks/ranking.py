"""Turning per-weight scores into a mask with an exact count of removed weights.

``k = round(s · d)`` weights are removed for a sparsity ``s`` over ``d`` weights.
``remove="lowest"`` removes the k lowest scores (magnitude, SNIP, SynFlow...),
``remove="highest"`` the k highest (GraSP). Ties are broken by position: parameters
in the order of ``scores``, then the flat index; the earlier weight is removed first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
from torch import Tensor

from prunekit.errors import ConfigError
from prunekit.masks.mask import Mask
from prunekit.masks.schedule import check_sparsity

Scope = Literal["global", "layerwise", "per_layer"]
RemoveEnd = Literal["lowest", "highest"]


def count_to_remove(sparsity: float, total: int) -> int:
    """Exact number of weights removed at ``sparsity`` out of ``total``."""
    return int(round(check_sparsity(sparsity) * total))


def layerwise_counts(sparsity: float, sizes: list[int]) -> list[int]:
    """Per-layer removal counts, each floor or ceil of s·d_l, summing to round(s·Σd_l).

    The extra removals go to the layers with the largest fractional parts (ties: the
    earlier layer)."""
    total = count_to_remove(sparsity, sum(sizes))
    exact = [sparsity * size for size in sizes]
    counts = [int(e) for e in exact]
    short = total - sum(counts)
    by_remainder = sorted(range(len(sizes)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in by_remainder[:short]:
        counts[i] += 1
    return counts


def _removal_order(values: Tensor, remove: RemoveEnd, frozen: Tensor | None) -> Tensor:
    """Flat indices ordered from first-to-remove to last, stable in position.

    Weights already removed (``frozen`` True) come first, whatever their score.
    """
    if torch.isnan(values).any():
        raise ConfigError(
            "scores contain NaN: check that the model's weights and the scoring data are "
            "finite; with finite inputs, the scoring method diverged on this model"
        )
    keyed = values.double() if remove == "lowest" else -values.double()
    order = torch.sort(keyed, stable=True).indices
    if frozen is not None and bool(frozen.any()):
        frozen_sorted = frozen[order]
        order = torch.cat([order[frozen_sorted], order[~frozen_sorted]])
    return order


def _select(values: Tensor, k: int, remove: RemoveEnd, frozen: Tensor | None) -> Tensor:
    keep = torch.ones(values.numel(), dtype=torch.bool)
    if frozen is not None and int(frozen.sum()) > k:
        raise ConfigError(
            f"{int(frozen.sum())} weights are already removed but the target removes only {k}: "
            "the target sparsity must not be lower than the current one"
        )
    keep[_removal_order(values, remove, frozen)[:k]] = False
    return keep


def scores_to_mask(
    scores: Mapping[str, Tensor],
    sparsity: float | Mapping[str, float],
    scope: Scope = "global",
    remove: RemoveEnd = "lowest",
    previous: Mask | None = None,
) -> Mask:
    """Mask removing exactly ``round(s·d)`` weights according to ``scores``.

    - ``scope="global"``: one ranking over all weights, ``sparsity`` a float.
    - ``scope="layerwise"``: each tensor pruned to ``sparsity`` on its own; per-layer
      counts are floor or ceil of s·d_l, apportioned by largest remainder so that the
      total is exactly round(s·d), as at the other scopes.
    - ``scope="per_layer"``: ``sparsity`` maps names to their own sparsity; a name
      absent from the dictionary stays dense.
    Weights removed in ``previous`` stay removed (iterative pruning).
    """
    if remove not in ("lowest", "highest"):
        raise ConfigError(f"remove must be 'lowest' or 'highest', got {remove!r}")
    if not scores:
        raise ConfigError("no scores given: the model has no prunable parameter")
    names = list(scores)
    if previous is not None and set(previous) != set(names):
        raise ConfigError("the previous mask covers different parameters than the scores")
    cpu = {n: scores[n].detach().reshape(-1).cpu() for n in names}
    frozen = {n: ~previous[n].reshape(-1).cpu() for n in names} if previous is not None else {}

    if scope == "global":
        if isinstance(sparsity, Mapping):
            raise ConfigError("global scope takes one sparsity; use scope='per_layer' for a dict")
        flat = torch.cat([cpu[n] for n in names])
        frozen_flat = torch.cat([frozen[n] for n in names]) if frozen else None
        keep = _select(flat, count_to_remove(sparsity, flat.numel()), remove, frozen_flat)
        return Mask.from_flat(keep, {n: scores[n] for n in names})

    if scope == "layerwise":
        if isinstance(sparsity, Mapping):
            raise ConfigError("layerwise scope takes one sparsity; use scope='per_layer'")
        per_layer = dict.fromkeys(names, float(sparsity))
    elif scope == "per_layer":
        if not isinstance(sparsity, Mapping):
            raise ConfigError("per_layer scope needs a dict of parameter name → sparsity")
        unknown = sorted(set(sparsity) - set(names))
        if unknown:
            raise ConfigError(
                f"per-layer sparsity names unknown parameters {unknown}; known: {names}"
            )
        per_layer = {n: float(sparsity.get(n, 0.0)) for n in names}
    else:
        raise ConfigError(f"scope must be 'global', 'layerwise' or 'per_layer', got {scope!r}")

    counts = (
        layerwise_counts(float(sparsity), [cpu[n].numel() for n in names])
        if scope == "layerwise"
        else [count_to_remove(per_layer[n], cpu[n].numel()) for n in names]
    )
    out = Mask()
    for n, k in zip(names, counts, strict=True):
        keep = _select(cpu[n], k, remove, frozen.get(n))
        out[n] = keep.reshape(scores[n].shape)
    return out
