"""One call for one-shot pruning of any model: gather the gradients, Fisher and training
loss from the training data, then run the method (what ``prunekit prune`` does)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

from prunekit.masks import prunable_parameters
from prunekit.methods.oneshot.evidence import (
    DataSource,
    FisherSettings,
    as_dataset,
    gather_evidence,
    init_scorer,
    prune_with_evidence,
)
from prunekit.methods.oneshot.layerwise import LayerwiseSettings, copy_buffers
from prunekit.methods.oneshot.registry import get_method, settings_for
from prunekit.methods.oneshot.results import OneShotResult


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
    Conv and Linear layer). The model is left unchanged unless ``apply=True``, which
    writes the new weights (removed ones exactly zero) into it. ``pattern="2:4"`` asks
    for an N:M semi-structured mask instead of ``sparsity`` (give None). With
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
