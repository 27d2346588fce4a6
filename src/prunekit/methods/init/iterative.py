"""Pruning in rounds: score, prune a little, score the pruned network again."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping

import torch
from torch import Tensor, nn

from prunekit.errors import ConfigError
from prunekit.masks import Mask, count_to_remove, exponential_schedule, scores_to_mask
from prunekit.methods.init._common import resolve_params
from prunekit.methods.scores import Scores

ScoreFn = Callable[[nn.Module, list[str]], Scores]


def _round_targets(
    sparsity: float | Mapping[str, float], rounds: int, scope: str, sizes: dict[str, int]
) -> list[tuple[float | dict[str, float], str]]:
    """(target, scope) of each round: the exponential schedule, the exact target last.

    Counts never decrease from one round to the next, so weights removed earlier fit
    in every later target. At layerwise scope the masks module apportions floor or
    ceil of s·d_l per layer; rounding a small step of the schedule per layer could
    then overshoot the final count of a layer, so intermediate rounds prune each
    layer to at most its final count (as ``per_layer`` targets) and the last round
    uses the layerwise scope itself.
    """
    if isinstance(sparsity, Mapping):
        per_layer = {n: exponential_schedule(s, rounds) for n, s in sparsity.items()}
        targets = [{n: steps[j] for n, steps in per_layer.items()} for j in range(rounds - 1)]
        return [(t, scope) for t in targets] + [(dict(sparsity), scope)]
    schedule = exponential_schedule(sparsity, rounds)[:-1]
    if scope != "layerwise" or rounds == 1:
        return [(s, scope) for s in schedule] + [(sparsity, scope)]
    dummy = {n: torch.zeros(d) for n, d in sizes.items()}
    final = scores_to_mask(dummy, sparsity, scope="layerwise")
    final_counts = {n: int((~m).sum()) for n, m in final.items()}
    rounds_out: list[tuple[float | dict[str, float], str]] = []
    for s in schedule:
        counts = {n: min(count_to_remove(s, d), final_counts[n], d - 1) for n, d in sizes.items()}
        rounds_out.append(({n: c / sizes[n] for n, c in counts.items()}, "per_layer"))
    return rounds_out + [(sparsity, "layerwise")]


def prune_iteratively(
    score_fn: ScoreFn,
    model: nn.Module,
    sparsity: float | Mapping[str, float],
    rounds: int,
    scope: str = "global",
    params: Iterable[str] | Mapping[str, Tensor] | None = None,
    previous: Mask | None = None,
) -> Mask:
    """Mask at ``sparsity`` reached in ``rounds`` rounds of scoring and pruning.

    ``score_fn(model, names)`` returns :class:`Scores` for the named parameters.
    After round j the density is ``(1 − s)^(j/r)`` (``exponential_schedule``); the
    last round removes exactly the count ``scores_to_mask`` gives at ``scope``
    (``round(s·d)`` globally). Between rounds the current mask is
    applied to a scoring copy of the model (removed weights set to zero; ``model``
    itself is never modified), and weights removed in an earlier round stay removed.
    One round scores ``model`` directly, without a copy. Weights removed in
    ``previous`` (an earlier stage's mask) stay removed and count towards the target.
    """
    if not isinstance(rounds, int) or rounds < 1:
        raise ConfigError(f"rounds must be a positive integer, got {rounds!r}")
    chosen = resolve_params(model, params)
    names = list(chosen)
    targets = _round_targets(sparsity, rounds, scope, {n: p.numel() for n, p in chosen.items()})
    scoring_model = model if rounds == 1 and previous is None else copy.deepcopy(model)
    mask: Mask | None = previous
    for target, round_scope in targets:
        if mask is not None:
            mask.apply(scoring_model)
        scores = score_fn(scoring_model, names)
        missing = sorted(set(names) - set(scores.values))
        if missing:
            raise ConfigError(f"the scoring function returned no scores for {missing}")
        ordered = Scores({n: scores.values[n] for n in names}, remove=scores.remove)
        mask = ordered.to_mask(target, scope=round_scope, previous=mask)
    assert mask is not None
    return mask
