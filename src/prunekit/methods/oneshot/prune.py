"""One-shot pruning of given weights with second-order information already gathered:
run a method's selection, check the count, run its update."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor, nn

from prunekit.errors import ConfigError, PrunekitError
from prunekit.masks import (
    Mask,
    check_nm,
    count_to_remove,
    nm_patterned,
    nm_removed_count,
    parse_pattern,
)
from prunekit.methods.oneshot.flat import flatten_weights, mask_from_removed, unflatten
from prunekit.methods.oneshot.problem import OneShotProblem
from prunekit.methods.oneshot.reclaim import reclaim_dead_weights
from prunekit.methods.oneshot.registry import get_method, settings_for
from prunekit.methods.oneshot.results import OneShotRecord, OneShotResult
from prunekit.methods.oneshot.update import apply_correction, local_model_change
from prunekit.second_order import EmpiricalFisher
from prunekit.utils.types import WeightsLoss

logger = logging.getLogger(__name__)


def check_parameter_names(model: nn.Module, names: Sequence[str]) -> None:
    """ConfigError naming the parameters ``model`` does not have, and the ones it has."""
    own = dict(model.named_parameters())
    unknown = [n for n in names if n not in own]
    if unknown:
        raise ConfigError(
            f"the model has no parameter(s) {unknown[:4]}; its parameters: {list(own)[:12]}"
        )
    if not names:
        raise ConfigError("no parameters to prune: give at least one name")


def prune_one_shot(
    model: nn.Module,
    names: Sequence[str],
    method: str,
    sparsity: float | None,
    *,
    fisher: EmpiricalFisher | None = None,
    training_loss: WeightsLoss | None = None,
    init_scores: Callable[[str], Mask] | None = None,
    settings: Iterable[object] = (),
    generator: torch.Generator | None = None,
    gradient: Tensor | None = None,
    fixed_removed: Tensor | None = None,
    pattern: str | None = None,
    input_shape: Sequence[int] | None = None,
    reclaim_dead: bool = True,
) -> OneShotResult:
    """Prune ``model``'s parameters ``names`` to ``sparsity`` with ``method``: exactly
    round(s·d) of the d weights are removed; the model is not changed.

    ``fisher`` (an :class:`EmpiricalFisher` of the same weights, in the order of
    ``names``) is needed by OBS, CBS and WoodFisher; ``training_loss(flat_w)`` is the
    real loss on *training* data with the weights set to ``flat_w`` (CBS's outer loop,
    update-scale choice); ``init_scores(name)`` returns the mask of a pruning-at-init
    score; ``settings`` holds the methods' settings objects (``CBSSettings``,
    ``UpdateSettings``...), defaults for any not given. See :class:`OneShotProblem` for
    ``gradient`` and ``fixed_removed``. With an N:M ``pattern`` (``"2:4"``) every
    patterned tensor keeps N of every M consecutive inputs of each row (the others stay
    dense); ``sparsity`` is then None or the pattern's. With ``input_shape`` (one
    sample's shape) and ``reclaim_dead``, kept weights on no input-to-output path are
    exchanged for removed ones on a path before the update (``reclaim``; not with a
    pattern). :func:`prunekit.methods.oneshot.prune_model` gathers all of this from a
    model and data in one call.
    """
    spec = get_method(method)
    settings = list(settings)
    check_parameter_names(model, names)
    weights = flatten_weights(model, names)
    nm = None if pattern is None else parse_pattern(pattern)
    if nm is None:
        k = count_to_remove(sparsity, weights.numel())
    else:
        shapes = [model.get_parameter(n).shape for n in names]
        dense = [
            n for n, shape in zip(names, shapes, strict=True) if not nm_patterned(shape, nm[1])
        ]
        if len(dense) == len(names):
            raise ConfigError(
                f"the {pattern} pattern fits none of the layers {list(names)[:6]} (no input "
                f"width is a multiple of {nm[1]}): it would remove nothing; choose another M"
            )
        if dense:
            logger.warning("%s cannot carry the %s pattern and stay dense", dense, pattern)
        k = nm_removed_count(shapes, nm)
        if sparsity is not None and count_to_remove(sparsity, weights.numel()) != k:
            raise ConfigError(
                f"the {pattern} pattern removes {k} of {weights.numel()} weights "
                f"(sparsity {k / weights.numel():.4g}); give no sparsity or that one"
            )
        sparsity = k / weights.numel()
    problem = OneShotProblem(
        model=model,
        names=names,
        weights=weights,
        sparsity=sparsity,
        k=k,
        pattern=nm,
        fisher=fisher,
        gradient=gradient,
        training_loss=training_loss,
        init_scores=init_scores,
        generator=generator,
        fixed_removed=fixed_removed,
    )
    if spec.needs_fisher:
        problem.require_fisher(f"method {spec.name!r}")
    update_settings = settings_for(spec.update.settings, settings)

    def update(removed: Tensor):
        return spec.update(problem, removed, update_settings)

    started = time.perf_counter()
    selection = spec.selection(problem, settings_for(spec.selection.settings, settings), update)
    selection_seconds = time.perf_counter() - started
    removed = selection.removed.cpu()
    if int(removed.sum()) != problem.k:
        raise PrunekitError(
            f"internal error: selection {spec.selection.name} removed {int(removed.sum())} "
            f"weights instead of {problem.k}"
        )
    if fixed_removed is not None and bool((fixed_removed.cpu() & ~removed).any()):
        raise PrunekitError(
            f"internal error: selection {spec.selection.name} revived a removed weight"
        )
    if nm is not None:
        check_nm(mask_from_removed(removed, model, names), *nm)  # exact pattern, or an error
    dead_selected = dead_kept = None
    exchanged, reclaim_losses = None, None
    if reclaim_dead and input_shape is not None and nm is None:
        reclaimed = reclaim_dead_weights(model, names, weights, removed, input_shape, fixed_removed)
        dead_selected, dead_kept = reclaimed.dead_before, reclaimed.dead_after
        if int(reclaimed.removed.sum()) != problem.k:
            raise PrunekitError("internal error: reclaiming dead weights changed the count")
        if not torch.equal(reclaimed.removed, removed):
            exchanged = reclaimed.removed

    def update_for(mask: Tensor):
        if (
            selection.exact_step is not None
            and spec.update.name == "cbs_u"
            and torch.equal(mask, selection.removed.cpu())
        ):  # the selection solved CBS-U's problem already (the L0 solver's backsolve)
            return apply_correction(
                problem,
                mask,
                selection.exact_step,
                lambda change: local_model_change(problem, change),
                update_settings,
            )
        return update(mask)

    started = time.perf_counter()
    if exchanged is None:
        updated = update_for(removed)
    elif problem.training_loss is None:
        removed, updated = exchanged, update_for(exchanged)
    else:
        # the exchange is kept only where it lowers the real training loss after the
        # update: a selection that scored masks on that loss (CBS) may have had reasons
        as_selected, with_exchange = update_for(removed), update_for(exchanged)
        reclaim_losses = {
            "as_selected": float(problem.training_loss(as_selected.weights)),
            "exchanged": float(problem.training_loss(with_exchange.weights)),
        }
        if reclaim_losses["exchanged"] <= reclaim_losses["as_selected"]:
            removed, updated = exchanged, with_exchange
        else:
            updated, dead_kept = as_selected, dead_selected
    update_seconds = time.perf_counter() - started
    search = selection.search
    record = OneShotRecord(
        selection=spec.selection.name,
        update=spec.update.name,
        removed=problem.k,
        prunable=problem.dim,
        selection_seconds=selection_seconds,
        update_seconds=update_seconds,
        predicted_loss_change=updated.predicted_loss_change,
        update_scale=updated.scale,
        update_scale_losses=updated.scale_losses,
        search_best_pass=None if search is None else search.best_pass,
        search_passes=None if search is None else search.passes,
        search_scored_with_update=None if search is None else search.scored_with_update,
        dead_weights_selected=dead_selected,
        dead_weights_kept=dead_kept,
        reclaim_losses=reclaim_losses,
    )
    return OneShotResult(
        mask=mask_from_removed(removed, model, names),
        weights=unflatten(updated.weights, model, names),
        record=record,
        search=search,
    )
