"""One one-shot run cell: prune the trained model, evaluate it without retraining,
write the cell's files (mask, sparsity report, pruned weights, search history, result)
and optionally fine-tune it with the mask held."""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from dataclasses import dataclass

import torch
from torch import nn

from prunekit.masks import save_mask, sparsity_report
from prunekit.methods.oneshot import get_method
from prunekit.methods.oneshot.evidence import (
    TrainingEvidence,
    init_scorer,
    prune_with_evidence,
)
from prunekit.methods.oneshot.flat import flatten_weights
from prunekit.methods.oneshot.layerwise import copy_buffers
from prunekit.methods.oneshot.multistage import prune_in_stages
from prunekit.pipelines.cells import Cell
from prunekit.pipelines.checks import check_collapse
from prunekit.pipelines.configs import OneShotConfig
from prunekit.pipelines.run_folder import write_json
from prunekit.pipelines.setup import DataBundle, agree_on_mask, validation_metrics
from prunekit.pipelines.train import training_settings
from prunekit.reports.tensorboard import FOLDER as TENSORBOARD
from prunekit.reports.tensorboard import tensorboard_log
from prunekit.training import evaluate, fit
from prunekit.utils.files import atomic_torch_save

logger = logging.getLogger(__name__)


@dataclass
class OneShotRun:
    """What every cell of one ``prune`` call shares."""

    config: OneShotConfig
    trained: nn.Module
    names: list[str]
    data: DataBundle
    dense: dict
    device: torch.device


def stage_progress(method: str, sparsity: float, seed: int, count: int, run: OneShotRun):
    """``on_stage`` for :func:`prune_in_stages`: logs each finished stage (progress of a
    long cell) and returns its validation metrics (reporting only)."""
    started = time.perf_counter()

    def on_stage(t: int, model: nn.Module) -> dict:
        metrics = validation_metrics(model, run.data, run.device)
        logger.info(
            "%s sparsity %g seed %d: stage %d/%d done, %.0fs so far%s",
            method,
            sparsity,
            seed,
            t + 1,
            count,
            time.perf_counter() - started,
            f", val_top1 {metrics['val_top1']:.2f}" if "val_top1" in metrics else "",
        )
        return metrics

    return on_stage


def prune_cell(
    run: OneShotRun,
    evidence: TrainingEvidence | None,
    cell: Cell,
    method: str,
    sparsity: float | None,
    seed: int,
) -> dict:
    """Prune, evaluate, write the cell's files, optionally fine-tune; the cell's record."""
    config, trained, names, data, dense, device = (
        run.config,
        run.trained,
        run.names,
        run.data,
        run.dense,
        run.device,
    )
    settings = [config.cbs, config.update, config.l0, config.layerwise]
    if config.stages.is_single:
        estimate = evidence.fisher
        scores = init_scorer(
            trained, names, sparsity, data.plain_train, config.samples_per_class, seed, device
        )
        result = prune_with_evidence(
            trained,
            names,
            method,
            sparsity,
            evidence,
            scores,
            settings,
            seed,
            pattern=config.pattern,
            reclaim_dead=config.reclaim_dead_weights,
        )
        training_loss = evidence.training_loss
        costs = {
            "fisher_samples_used": None if estimate is None else estimate.samples_used,
            "gradient_seconds": 0.0 if estimate is None else estimate.seconds,
            "prune_seconds": result.record.selection_seconds + result.record.update_seconds,
        }
    else:
        staged = prune_in_stages(
            trained,
            names,
            method,
            sparsity,
            data.plain_train,
            stages=config.stages,
            fisher=config.fisher,
            loss_samples=config.loss_samples,
            settings=settings,
            samples_per_class=config.samples_per_class,
            seed=seed,
            device=device,
            on_stage=stage_progress(method, sparsity, seed, len(config.stages.plan(sparsity)), run),
            reclaim_dead=config.reclaim_dead_weights,
        )
        result = staged.result
        write_json(cell.folder / "stages.json", staged.stages)
        with tensorboard_log(cell.folder / TENSORBOARD, config.tensorboard) as log:
            if log is not None:
                log.stages([dataclasses.asdict(stage) for stage in staged.stages])
        training_loss = None
        costs = {
            "fisher_samples_used": config.fisher.samples
            if get_method(method).needs_fisher
            else None,
            "stages": len(staged.stages),
            "stage_sparsities": [r.sparsity for r in staged.stages],
            "gradient_seconds": sum(r.evidence_seconds for r in staged.stages),
            "prune_seconds": sum(r.prune_seconds for r in staged.stages),
        }
    checksum = agree_on_mask(result.mask, f"the mask of {cell.folder}", result.weights)
    pruned = copy.deepcopy(trained)
    with torch.no_grad():
        for name, value in result.weights.items():
            pruned.get_parameter(name).copy_(value)
    copy_buffers(pruned, result)
    if not result.mask.holds_in(pruned):
        raise AssertionError("pruned weights are not zero after the update")
    metrics = evaluate(pruned, data.test_loader, device, num_classes=data.num_classes)
    report = sparsity_report(result.mask, pruned)
    sparsity = result.record.removed / result.record.prunable if sparsity is None else sparsity
    check_collapse(
        report.collapsed_layers,
        f"{method} at sparsity {sparsity:g} (seed {seed}, {cell.folder})",
        config.on_collapse,
        logger,
    )
    save_mask(result.mask, cell.folder / "mask.pt")
    report.save(cell.folder / "sparsity.json")
    atomic_torch_save(pruned.state_dict(), cell.folder / "pruned_model.pt")
    if result.search is not None:
        write_json(cell.folder / "search.json", result.search)
    record = {
        "model": config.model,
        "method": method,
        **({"pattern": config.pattern} if config.pattern else {}),
        "sparsity": sparsity,
        "seed": seed,
        "top1": metrics["top1"],
        "loss": metrics["loss"],
        "train_loss": staged.stages[-1].training_loss
        if training_loss is None
        else training_loss(flatten_weights(pruned, names)),
        "dense_top1": dense["top1"],
        **validation_metrics(pruned, data, device),
        **costs,
        "collapsed_layers": report.collapsed_layers,
        "mask_checksum": checksum,
        **result.record.to_dict(),
    }
    logger.info(
        "%s sparsity %g seed %d: top1 %.2f (dense %.2f), removed %d/%d, %.1fs",
        method,
        sparsity,
        seed,
        metrics["top1"],
        dense["top1"],
        result.record.removed,
        result.record.prunable,
        record["prune_seconds"],
    )
    if config.epochs > 0:
        with tensorboard_log(cell.folder / TENSORBOARD, config.tensorboard) as log:
            final = fit(
                pruned,
                data.train_loader,
                data.test_loader,
                training_settings(config, seed, config.progress),
                run_dir=cell.folder / "finetune",
                mask=result.mask,
                resume=True,
                device=device,
                on_epoch=None if log is None else log.epoch,
            )
        record["finetuned_top1"] = final.get("test_top1")
        record["finetuned_loss"] = final.get("test_loss")
        record.update(validation_metrics(pruned, data, device, prefix="finetuned_val_"))
    return cell.write_result(record)
