"""Multi-stage one-shot pruning (CHITA++-style): prune to s₁ < s₂ < … < s_T = s, and at
every stage re-estimate the local model where the weights now are.

At each stage the gradients, the factored Fisher (and the mean gradient ḡ with a
first-order local model) and the training loss are recomputed at the current, already
pruned and updated weights; the method (any registered selection + update) then removes
exactly round(s_t·d) weights, earlier removals staying removed. One stage is exactly
single-stage pruning.

Samples (``StageSettings.samples``): ``fresh`` (the default) draws every stage's Fisher
and loss samples anew, with the seed :func:`stage_seed` (seed, t); stage 0 uses the
run's seed itself, so its draw is the one-shot draw. Each stage fits the weights to the
samples it saw, so ḡ and F of a later stage must come from samples that stage did not
fit (docs/LOCAL_MODEL.md). ``reuse`` draws the same samples at every stage (the earlier
rule, kept for comparison). When the stages together ask for more samples than the
data hold, each stage's draw is a random subset of all of them: draws overlap, but no
two stages see the same set.

A schedule may reach the target count before its last stage (30 exponential stages on
MLPNet's 32,360 weights reach it at stage 17: later sparsities differ by less than one
weight). The stages after that remove no new weight: each re-fits the kept weights on
its own fresh samples (the method's update with the mask held), and its record shows
the same ``removed`` count as the stage before.
"""

from __future__ import annotations

import copy
import hashlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import Dataset

from prunekit.errors import ConfigError
from prunekit.masks import stage_sparsities
from prunekit.methods.oneshot.evidence import (
    FisherSettings,
    gather_evidence,
    init_scorer,
    prune_with_evidence,
)
from prunekit.methods.oneshot.flat import flatten_weights, removed_from_mask
from prunekit.methods.oneshot.layerwise import LayerwiseSettings, copy_buffers
from prunekit.methods.oneshot.registry import get_method, settings_for
from prunekit.methods.oneshot.results import OneShotResult
from prunekit.utils.settings import setting

MAX_STAGES = 1000


def stage_seed(seed: int, stage: int) -> int:
    """The sample seed of stage ``stage`` for a run seeded ``seed``: ``seed`` itself at
    stage 0 (the one-shot draw), else a 63-bit hash of (seed, stage), so that no stage
    of one seed reuses the draw of another stage or of another seed's stage 0."""
    if stage == 0:
        return seed
    digest = hashlib.sha256(f"prunekit-stage:{seed}:{stage}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


@dataclass
class StageSettings:
    """The stage schedule: ``count`` stages of the ``schedule`` kind from ``base``, or
    the explicit ``sparsities`` (ending at the target); one stage is one-shot."""

    count: int = setting(1, "pruning stages (1: one-shot, as in the OBS/CBS papers)")
    schedule: str = setting(
        "exponential",
        "stage schedule",
        choices=["exponential", "polynomial", "cubic", "linear", "geometric"],
    )
    base: float | None = setting(
        None, "first stage's sparsity (exponential/cubic; default a tenth of the target)"
    )
    sparsities: list[float] = setting(
        [], "explicit stage sparsities, ending at the target (overrides count and schedule)"
    )
    samples: str = setting(
        "fresh",
        "each stage's Fisher and loss samples: fresh (drawn anew per stage) or reuse "
        "(the same samples at every stage)",
        choices=["fresh", "reuse"],
    )

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise ConfigError(f"stages count must be an integer >= 1, got {self.count!r}")
        if self.count > MAX_STAGES:
            raise ConfigError(
                f"stages count {self.count} is too large: at most {MAX_STAGES} stages"
            )
        if self.samples not in ("fresh", "reuse"):
            raise ConfigError(f"stages samples must be 'fresh' or 'reuse', got {self.samples!r}")

    def seed_of(self, seed: int, stage: int) -> int:
        """The seed of stage ``stage``'s sample draw (see the module docstring)."""
        return seed if self.samples == "reuse" else stage_seed(seed, stage)

    @property
    def is_single(self) -> bool:
        return self.count == 1 and not self.sparsities

    def plan(self, target: float, start: float = 0.0) -> list[float]:
        """The sparsity after each stage, the last exactly ``target``."""
        if self.sparsities:
            return stage_sparsities(target, list(self.sparsities), "explicit", start=start)
        return stage_sparsities(target, self.count, self.schedule, start=start, base=self.base)


@dataclass
class StageRecord:
    """One stage: its sparsity and count, the seed of its sample draw, the local model's
    predicted change, the training loss after it (on this stage's loss samples), seconds
    (evidence, pruning), the update scale applied (and the training loss of each scale
    tried, with a scale grid) and optional metrics."""

    stage: int
    sparsity: float
    removed: int
    sample_seed: int
    predicted_loss_change: float | None
    training_loss: float
    evidence_seconds: float
    prune_seconds: float
    update_scale: float | None = None
    update_scale_losses: dict[float, float] | None = None
    metrics: dict = field(default_factory=dict)


@dataclass
class MultiStageResult:
    """The final result (mask, weights, record of the last stage) and every stage."""

    result: OneShotResult
    stages: list[StageRecord]


def prune_in_stages(
    model: nn.Module,
    names: Sequence[str],
    method: str,
    sparsity: float,
    dataset: Dataset,
    *,
    stages: StageSettings,
    fisher: FisherSettings,
    loss_samples: int | None,
    settings: Iterable[object] = (),
    samples_per_class: int = 10,
    seed: int = 0,
    device: torch.device | str = "cpu",
    on_stage: Callable[[int, nn.Module], dict] | None = None,
    reclaim_dead: bool = True,
) -> MultiStageResult:
    """Prune ``model``'s ``names`` to ``sparsity`` in stages with ``method``; the model is
    not changed. Weights that are exactly zero in ``model`` already count as removed
    (the start of the schedule). ``fisher.first_order`` None means on with more than
    one stage. ``on_stage(t, pruned_model)`` may return metrics to record for stage t
    (e.g. validation accuracy: reporting only). ``reclaim_dead``: see
    :func:`prune_one_shot`."""
    settings = list(settings)
    fisher = fisher.resolved(staged=not stages.is_single)
    spec = get_method(method)
    current = copy.deepcopy(model)
    removed = flatten_weights(current, names) == 0
    start = float(removed.float().mean()) if removed.any() else 0.0
    plan = stages.plan(sparsity, start)
    to_remove = round(sparsity * removed.numel()) - int(removed.sum())
    if len(plan) > max(to_remove, 1):
        raise ConfigError(
            f"{len(plan)} stages for {to_remove} weights to remove: every stage must remove "
            f"at least one weight; use at most {max(to_remove, 1)} stages"
        )
    records: list[StageRecord] = []
    result = None
    layerwise = settings_for(LayerwiseSettings, settings)
    calibration = layerwise.calibration_samples if spec.layerwise else None
    for t, stage_sparsity in enumerate(plan):
        sample_seed = stages.seed_of(seed, t)
        started = time.perf_counter()
        evidence = gather_evidence(
            current,
            names,
            dataset,
            fisher_settings=fisher,
            loss_samples=loss_samples,
            seed=sample_seed,
            need_fisher=spec.needs_fisher,
            device=device,
            calibration_samples=calibration,
            # earlier removals are held at zero: G over the alive weights only
            fisher_coordinates=~removed if removed.any() else None,
        )
        evidence_seconds = time.perf_counter() - started
        scores = init_scorer(
            current, names, stage_sparsity, dataset, samples_per_class, sample_seed, device
        )
        result = prune_with_evidence(
            current,
            names,
            method,
            stage_sparsity,
            evidence,
            scores,
            settings,
            seed,
            fixed_removed=removed if removed.any() else None,
            reclaim_dead=reclaim_dead,
        )
        with torch.no_grad():
            for name, value in result.weights.items():
                current.get_parameter(name).copy_(value)
        copy_buffers(current, result)
        removed = removed_from_mask(result.mask, names)
        records.append(
            StageRecord(
                stage=t,
                sparsity=stage_sparsity,
                removed=result.record.removed,
                sample_seed=sample_seed,
                predicted_loss_change=result.record.predicted_loss_change,
                training_loss=evidence.training_loss(flatten_weights(current, names)),
                evidence_seconds=evidence_seconds,
                prune_seconds=result.record.selection_seconds + result.record.update_seconds,
                update_scale=result.record.update_scale,
                update_scale_losses=result.record.update_scale_losses,
                metrics=on_stage(t, current) if on_stage is not None else {},
            )
        )
        del evidence  # G of this stage is freed before the next one is computed
    assert result is not None
    return MultiStageResult(result, records)
