"""``prunekit prune``: one-shot pruning of a trained network over methods, sparsities
and seeds.

For each seed: draw the training samples, compute their gradients at the trained
weights and the factored Fisher once (``methods.oneshot.evidence``); then for each
method and sparsity run the method, evaluate on the test set without retraining and
optionally fine-tune with the mask held. Each (method, sparsity, seed) is a run cell
identified by its result-relevant settings (``pipelines.cells``): a finished cell is
reused only when they match. Every choice uses training data only.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path

from prunekit.data.fingerprint import dataset_fingerprint
from prunekit.errors import ConfigError
from prunekit.masks import count_to_remove, nm_removed_count, parse_pattern, prunable_parameters
from prunekit.methods.oneshot import canonical_name, get_method
from prunekit.methods.oneshot.evidence import gather_evidence
from prunekit.pipelines.cells import TRAINING_FIELDS, file_digest, open_cell, result_settings
from prunekit.pipelines.configs import ONESHOT_SPARSITIES, OneShotConfig
from prunekit.pipelines.grid import (
    check_distinct_counts,
    check_distinct_methods,
    check_grid,
    requested_sparsities,
)
from prunekit.pipelines.oneshot_cell import OneShotRun, prune_cell
from prunekit.pipelines.run_folder import tensorboard_tables, write_json, write_summary
from prunekit.pipelines.setup import (
    build_data,
    build_model,
    check_pattern_fits,
    load_weights,
    prunable_shapes,
    start_run,
)
from prunekit.training import evaluate

logger = logging.getLogger(__name__)


def cell_settings(
    config: OneShotConfig,
    method: str,
    sparsity: float | None,
    seed: int,
    checkpoint_digest: str,
    data_digest: str | None = None,
) -> dict:
    """What decides a cell's result: the config less what this method does not read
    (other methods' settings, training settings when nothing is fine-tuned), the
    checkpoint's SHA-256 and the data's fingerprint."""
    spec = get_method(method)
    drop = set() if config.epochs > 0 else set(TRAINING_FIELDS)
    if not spec.needs_fisher:
        drop.add("fisher")
    if "cbs_s" != spec.selection.name:
        drop.add("cbs")
    if spec.update.settings is None:
        drop.add("update")
    if spec.selection.name != "l0":
        drop.add("l0")
    if not spec.layerwise:
        drop.add("layerwise")
    if config.stages.is_single:
        drop.add("stages")
    if spec.selection.name not in ("random", "snip", "grasp", "synflow"):
        drop.add("samples_per_class")
    # the hash holds the first-order choice as decided (its default depends on the stages)
    config = dataclasses.replace(
        config, fisher=config.fisher.resolved(staged=not config.stages.is_single)
    )
    settings = result_settings(config, frozenset(drop))
    return {
        **settings,
        "checkpoint_sha256": checkpoint_digest,
        "data_fingerprint": data_digest,
        "method": method,
        "sparsity": sparsity,
        "seed": seed,
    }


def check_levels(config: OneShotConfig) -> tuple[list[str], list, list[int]]:
    """Methods, sparsities (``[None]`` for an N:M pattern) and seeds of the call, each
    once, checked before any work: a preset beside its own pair, two sparsities that
    remove the same count, sparsities beside a pattern, a pattern that fits no layer."""
    shapes = prunable_shapes(
        config,
        keep_first_layer_dense=config.keep_first_layer_dense,
        keep_classifier_dense=config.keep_classifier_dense,
    )
    total = None if shapes is None else sum(math.prod(shape) for shape in shapes.values())
    removed = None
    if config.pattern is not None and shapes is not None:
        removed = nm_removed_count(list(shapes.values()), config.pattern)
    sparsities = requested_sparsities(
        config.sparsities,
        ONESHOT_SPARSITIES,
        config.pattern,
        lambda s: removed is None or count_to_remove(s, total) == removed,
        "its own" if removed is None else f"{removed}/{total} = {removed / total:.4g}",
    )
    methods, sparsities, seeds = check_grid(
        config.methods, sparsities or [0.5], config.seeds, canonical_name
    )
    check_distinct_methods(
        methods, lambda m: (get_method(m).selection.name, get_method(m).update.name)
    )
    if config.pattern is not None:  # the pattern fixes the count: one level, no list
        parse_pattern(config.pattern)
        if not config.stages.is_single:
            raise ConfigError("an N:M pattern is pruned in one stage: drop --stages-*")
        if shapes is not None:
            dense = check_pattern_fits(config.pattern, shapes)
            if dense:
                logger.warning(
                    "%s cannot carry the %s pattern and stay dense", dense, config.pattern
                )
        return methods, [None], seeds
    if total is not None:
        check_distinct_counts(sparsities, total)
    return methods, sparsities, seeds


def level_name(sparsity: float | None, pattern: str | None) -> str:
    """A cell's sparsity level folder: ``sparsity-0.9`` or ``pattern-2of4``."""
    if pattern is not None:
        n, m = parse_pattern(pattern)
        return f"pattern-{n}of{m}"
    return f"sparsity-{sparsity:g}"


def run_oneshot(config: OneShotConfig) -> dict:
    """Run every (seed, method, sparsity); returns where the results are."""
    if not config.checkpoint:
        raise ConfigError("prune needs --checkpoint PATH: the trained weights to prune")
    methods, sparsities, seeds = check_levels(config)
    if config.loss_samples is not None and config.loss_samples < 1:
        raise ConfigError(f"loss_samples must be >= 1, got {config.loss_samples}")
    digest = file_digest(config.checkpoint)
    device, root = start_run(
        config, "prune", Path("runs") / "prune" / f"{config.model}-{config.dataset}"
    )
    data = build_data(
        config.dataset,
        config.data_dir,
        config.batch_size,
        config.test_batch_size,
        seeds[0],
        augment=config.augment,
        download=config.download,
        train_subset=config.train_subset,
        validation_size=config.validation_size,
        dataset_kwargs=config.dataset_kwargs,
    )
    trained = build_model(config.model, data.num_classes, config.model_kwargs, 0)
    load_weights(trained, config.checkpoint)
    trained.to(device).eval()
    names = list(
        prunable_parameters(
            trained,
            keep_first_layer_dense=config.keep_first_layer_dense,
            keep_classifier_dense=config.keep_classifier_dense,
        )
    )
    dense = evaluate(trained, data.test_loader, device, num_classes=data.num_classes)
    logger.info("dense model: test top1 %.2f, loss %.4f", dense["top1"], dense["loss"])
    # again on the real model: for image folders only now is the classifier known
    if config.pattern is not None:
        check_pattern_fits(config.pattern, {n: trained.get_parameter(n).shape for n in names})
    else:
        check_distinct_counts(sparsities, sum(trained.get_parameter(n).numel() for n in names))
    data_digest = dataset_fingerprint(data.plain_train, data.test)
    write_json(root / "dense.json", {**dense, "checkpoint_sha256": digest})
    run = OneShotRun(config, trained, names, data, dense, device)
    records = []
    for seed in seeds:
        cells = {
            (m, s): open_cell(
                root,
                [m.replace("+", "_plus_"), level_name(s, config.pattern), f"seed-{seed}"],
                cell_settings(config, m, s, seed, digest, data_digest),
            )
            for m in methods
            for s in sparsities
        }
        pending = {key: cell for key, cell in cells.items() if cell.finished() is None}
        for key, cell in cells.items():
            if key not in pending:
                logger.info("%s: finished with the same settings, reused", cell.folder)
        evidence = None
        if pending and config.stages.is_single:  # multi-stage cells gather their own
            evidence = gather_evidence(
                trained,
                names,
                data.plain_train,
                fisher_settings=config.fisher,
                loss_samples=config.loss_samples,
                seed=seed,
                device=device,
                need_fisher=any(get_method(m).needs_fisher for m, _ in pending),
                calibration_samples=config.layerwise.calibration_samples
                if any(get_method(m).layerwise for m, _ in pending)
                else None,
            )
        for key, cell in cells.items():
            method, sparsity = key
            record = cell.finished() if key not in pending else None
            if record is None:
                record = prune_cell(run, evidence, cell, method, sparsity, seed)
            records.append(record)
    text = write_summary(
        root, records, SUMMARY, "one-shot pruning", config.reference, x_axis="density-log"
    )
    tensorboard_tables(root, text, config.tensorboard)
    return {"run_dir": str(root), "table": str(root / "results.md")}


SUMMARY = [
    ("One-shot pruning: test top-1 (%) without retraining, mean ± std over seeds.", "top1", 2),
    ("Validation top-1 (held-out training samples), without retraining.", "val_top1", 2),
    ("After fine-tuning: test top-1 (%).", "finetuned_top1", 2),
    ("Pruning time (s, selection + update).", "prune_seconds", 1),
]


COMMAND = {
    "name": "prune",
    "help": "one-shot prune a trained model (magnitude, WoodFisher/OBS, CBS), optionally fine-tune",
    "description": "Prune a trained checkpoint in one shot with second-order information: "
    "gradients on training data, a factored empirical Fisher, a selection (magnitude, OBS, "
    "CBS-S, ...) and an update (none, WoodFisher, CBS-U), over sparsities and seeds.",
    "config_class": OneShotConfig,
    "run": run_oneshot,
}
