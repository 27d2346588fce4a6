"""Giving wasted kept weights back to the count.

A kept weight on no input-to-output path (``masks.paths``) changes nothing the network
computes, yet it counts as kept. After any selection, such weights are removed and the
same number of removed weights are kept instead: those that would lie on a path, the
highest ``rank`` first (by default the largest trained magnitudes |w̄|; never a weight
that must stay removed). The count is unchanged. Whether the exchange is kept is the
caller's choice (``prune_one_shot`` keeps it only where it lowers the training loss).

Candidates are judged against the kept set less its dead weights, so their paths run
through live kept weights only; removing a dead weight cuts no path, so after one
exchange no kept weight is dead, unless fewer candidates exist than dead kept weights
(then the dead ones of lowest rank are dropped, the others stay).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from prunekit.errors import ConfigError
from prunekit.masks.paths import path_gradients


@dataclass
class Reclaimed:
    """The new removal mask (True = removed, same count) and the number of kept weights
    on no path before and after (None: the model could not be analysed)."""

    removed: Tensor
    dead_before: int | None
    dead_after: int | None


def on_path(
    model: nn.Module, names: Sequence[str], removed: Tensor, input_shape: Sequence[int]
) -> Tensor | None:
    """Flat bool: True where a weight, if kept, would lie on an input-to-output path
    given the kept set ~``removed``. None when the model is not analysable."""
    kept, start = [], 0
    for name in names:
        param = model.get_parameter(name)
        kept.append(~removed[start : start + param.numel()].reshape(param.shape).cpu())
        start += param.numel()
    grads = path_gradients(model, names, kept, input_shape)
    if grads is None:
        return None
    return torch.cat([g.reshape(-1) > 0 for g in grads]).to(removed.device)


def reclaim_dead_weights(
    model: nn.Module,
    names: Sequence[str],
    weights: Tensor,
    removed: Tensor,
    input_shape: Sequence[int],
    fixed_removed: Tensor | None = None,
    rank: Tensor | Callable[[], Tensor] | None = None,
) -> Reclaimed:
    """Exchange the kept weights on no path for removed ones on a path (see the module
    docstring). ``rank`` (flat, higher = more worth keeping; a function is called only
    when there are dead weights, since it may be costly): the order in which candidates
    are kept; None ranks by |w̄| (``weights``, the flat trained weights)."""
    live = on_path(model, names, removed, input_shape)
    if live is None:
        return Reclaimed(removed, None, None)
    dead = ~removed & ~live
    before = int(dead.sum())
    if before == 0:
        return Reclaimed(removed, 0, 0)
    if callable(rank):
        rank = rank()
    worth = (weights.abs() if rank is None else rank).to(removed.device, torch.float64)
    if worth.shape != removed.shape or bool(torch.isnan(worth).any()):
        raise ConfigError(f"rank must be a vector of {removed.numel()} numbers, none NaN")
    # candidates are judged without the dead weights: their paths then run through live
    # kept weights only, which the exchange keeps
    pruned_alive = removed | dead
    candidates = removed & on_path(model, names, pruned_alive, input_shape)
    if fixed_removed is not None:
        candidates &= ~fixed_removed.to(removed.device)
    swaps = min(before, int(candidates.sum()))
    out = removed.clone()
    if swaps > 0:
        revive = torch.topk(torch.where(candidates, worth, -torch.inf), swaps).indices
        drop = torch.topk(torch.where(dead, -worth, -torch.inf), swaps).indices
        out[revive] = False
        out[drop] = True
    after_live = on_path(model, names, out, input_shape)
    after = int((~out & ~after_live).sum())
    return Reclaimed(out, before, after)

