"""One call for one-shot pruning of any model: gather the gradients, Fisher and training
loss from the training data, then run the method (what ``prunekit prune`` does)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn
from torch.utils.data import Dataset

from prunekit.errors import ConfigError, DataError
from prunekit.masks import prunable_parameters
from prunekit.methods.oneshot.evidence import (
    DEFAULT_LOSS_SAMPLES,
    DataSource,
    FisherSettings,
    as_dataset,
    gather_evidence,
    init_scorer,
    prune_with_evidence,
    sample_order,
    stack_samples,
)
from prunekit.methods.oneshot.layerwise import LayerwiseSettings, copy_buffers
from prunekit.methods.oneshot.prune import check_parameter_names
from prunekit.methods.oneshot.registry import get_method, settings_for
from prunekit.methods.oneshot.results import OneShotResult
from prunekit.utils.model_checks import check_batch


def check_call(
    model: nn.Module,
    dataset: Dataset,
    names: Sequence[str] | None,
    loss_samples: int | None,
    seed: int,
) -> None:
    """What :func:`prune_model` reads, checked before any work: a model with weights
    (not on the meta device), names it has, training data with samples, class-index
    targets and finite inputs among the loss samples, a positive ``loss_samples``."""
    params = list(model.parameters())
    if not params:
        raise ConfigError(f"model {type(model).__name__} has no parameters to prune")
    if any(p.is_meta for p in params):
        raise ConfigError(
            f"model {type(model).__name__} is on the meta device (its weights have no values): "
            "materialise it (model.to_empty(device='cpu')) and load its weights first"
        )
    if names is not None:
        check_parameter_names(model, list(names))
    if loss_samples is not None and (isinstance(loss_samples, bool) or loss_samples < 1):
        raise ConfigError(f"loss_samples must be >= 1 (the training loss), got {loss_samples!r}")
    try:
        size = len(dataset)  # type: ignore[arg-type]
    except TypeError:
        raise ConfigError(
            "the training data must have a length: (inputs, targets) tensors, a map-style "
            f"Dataset or a DataLoader over one, got {type(dataset).__name__}"
        ) from None
    if size == 0:
        raise DataError("the training data holds no samples: give at least one (input, target)")
    count = min(size, loss_samples or DEFAULT_LOSS_SAMPLES)
    x, y = stack_samples(dataset, sample_order(dataset, seed)[:count])
    if y.dim() != 1 or y.is_floating_point() or y.dtype == torch.bool:
        hint = " (one-hot? give targets.argmax(1))" if y.dim() == 2 else ""
        raise DataError(
            f"the training targets must be class indices, a 1-D integer tensor; got {y.dtype} "
            f"of shape {tuple(y.shape)}{hint}"
        )
    check_batch(model, x.to(params[0].device), y.to(params[0].device), "the loss samples")


def prune_model(
    model: nn.Module,
    method: str,
    sparsity: float | None,
    data: DataSource,
    *,
    names: Sequence[str] | None = None,
    fisher: FisherSettings | None = None,
    loss_samples: int | None = None,
    settings: Iterable[object] = (),
    samples_per_class: int = 10,
    seed: int = 0,
    apply: bool = False,
    pattern: str | None = None,
    reclaim_dead: bool = True,
) -> OneShotResult:
    """Prune a trained ``model`` in one shot with ``method`` (``magnitude``,
    ``woodfisher``, ``cbs``, any ``selection+update``): exactly round(s·d) of its d
    prunable weights are removed.

    ``data`` is the *training* data: ``(inputs, targets)`` tensors, a Dataset or a
    DataLoader (its dataset is used). A seeded draw of it gives the Fisher's gradients
    (``fisher``: m, batch size, dampening, blocks; default m = min(1000, n)) and the
    samples of the real training loss (``loss_samples``, default min(10000, n)).
    ``names`` default to :func:`prunekit.masks.prunable_parameters` (the weight of every
    Conv and Linear layer and nn.MultiheadAttention's input projections). The model is
    left unchanged unless ``apply=True``, which writes the new weights (removed ones
    exactly zero) into it. ``pattern="2:4"`` asks for an N:M semi-structured mask
    instead of ``sparsity`` (give None). With
    ``reclaim_dead`` (the default) kept weights on no input-to-output path are exchanged
    for removed ones on a path (``result.record.dead_weights_*``). Layer-wise methods
    (``sparsegpt``, ``obc``, ``lw_l0``, ``lw_magnitude``) form no Fisher: they prune
    layer by layer on the inputs of a seeded draw of ``calibration_samples`` (a
    ``LayerwiseSettings`` in ``settings``; default min(1024, n)), see ``prune_layerwise``.

    Example::

        result = prune_model(model, "cbs", 0.9, (x_train, y_train))
        result.mask        # Mask: True = kept
        result.weights     # updated prunable weights
    """
    dataset = as_dataset(data)
    check_call(model, dataset, names, loss_samples, seed)
    names = list(names) if names is not None else list(prunable_parameters(model))
    if fisher is None:
        fisher = FisherSettings(samples=min(1000, len(dataset)))
    device = next(model.parameters()).device
    settings = list(settings)
    calibration = None
    if get_method(method).layerwise:  # a seeded draw of inputs; no Fisher is formed
        given = any(isinstance(item, LayerwiseSettings) for item in settings)
        calibration = settings_for(LayerwiseSettings, settings).calibration_samples
        calibration = calibration if given else min(calibration, len(dataset))
    evidence = gather_evidence(
        model,
        names,
        dataset,
        fisher_settings=fisher,
        loss_samples=loss_samples,
        seed=seed,
        need_fisher=get_method(method).needs_fisher,
        device=device,
        calibration_samples=calibration,
    )
    scores = init_scorer(model, names, sparsity, dataset, samples_per_class, seed, device)
    result = prune_with_evidence(
        model,
        names,
        method,
        sparsity,
        evidence,
        scores,
        settings,
        seed,
        pattern=pattern,
        reclaim_dead=reclaim_dead,
    )
    if apply:
        with torch.no_grad():
            for name, value in result.weights.items():
                model.get_parameter(name).copy_(value)
        copy_buffers(model, result)  # BatchNorm statistics a layer-wise method re-estimated
    return result
