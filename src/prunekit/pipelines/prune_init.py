"""Prune at initialization, then train: init → score → mask → report → train → evaluate.

For each seed the network is initialised once and every method and sparsity starts
from that same initialisation; scores are computed on a class-balanced sample of the
*training* set. Each (method, sparsity, seed) gets a folder with the mask, the
sparsity report, the training log and the final metrics; a finished one is not redone
and an interrupted one resumes. ``results.jsonl``, ``results.md`` and ``results.png``
collect everything at the top of the run folder.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import torch

from prunekit.data import class_balanced_batches
from prunekit.data.fingerprint import dataset_fingerprint
from prunekit.errors import ConfigError, PrunekitError
from prunekit.masks import (
    load_mask,
    parse_pattern,
    prunable_parameters,
    save_mask,
    sparsity_report,
)
from prunekit.methods.init import get_init_method, score_and_mask
from prunekit.methods.init.options import init_method_options
from prunekit.pipelines.cells import open_cell, result_settings
from prunekit.pipelines.checks import LayerCollapseError as LayerCollapseError
from prunekit.pipelines.checks import check_collapse
from prunekit.pipelines.configs import INIT_SPARSITIES, PruneInitConfig
from prunekit.pipelines.grid import check_distinct_counts, check_grid, requested_sparsities
from prunekit.pipelines.run_folder import tensorboard_tables, write_json, write_summary
from prunekit.pipelines.setup import (
    agree_on_mask,
    build_data,
    build_model,
    check_pattern_fits,
    prunable_shapes,
    start_run,
    validation_metrics,
)
from prunekit.pipelines.train import training_settings
from prunekit.reports.tensorboard import FOLDER as TENSORBOARD
from prunekit.reports.tensorboard import tensorboard_log
from prunekit.training import fit

logger = logging.getLogger(__name__)


def _default_rounds(method: str, rounds: int | None) -> int:
    if rounds is not None:
        if rounds < 1:
            raise ConfigError(f"rounds must be >= 1, got {rounds}")
        return rounds
    return 100 if method == "synflow" else 1


def check_config(config: PruneInitConfig) -> tuple[list[str], list[float], list[int]]:
    """The call's grid (each method, sparsity and seed once), after checking options:
    sparsities that remove the same count, sparsities beside a pattern and a pattern that
    fits no layer are refused before any work."""
    pattern = None if config.pattern is None else parse_pattern(config.pattern)
    implied = None if pattern is None else 1 - pattern[0] / pattern[1]
    sparsities = requested_sparsities(
        config.sparsities,
        INIT_SPARSITIES,
        config.pattern,
        lambda s: abs(s - implied) < 1e-9,
        f"{implied:g} of every patterned layer" if pattern else "",
    )
    grid = check_grid(
        config.methods, sparsities or [implied], config.seeds, lambda m: get_init_method(m).name
    )
    shapes = prunable_shapes(config, keep_classifier_dense=config.keep_classifier_dense)
    if pattern is not None:
        if config.rounds not in (None, 1):
            raise ConfigError("an N:M pattern is chosen in one round: drop --rounds")
        if shapes is not None:
            check_pattern_fits(config.pattern, shapes)
        grid = (grid[0], [implied], grid[2])
    elif shapes is not None:
        check_distinct_counts(grid[1], sum(math.prod(shape) for shape in shapes.values()))
    if config.samples_per_class < 1 or config.num_iters < 1:
        raise ConfigError("samples_per_class and num_iters must be >= 1")
    return grid


def cell_settings(
    config: PruneInitConfig,
    method: str,
    sparsity: float,
    seed: int,
    data_digest: str | None = None,
) -> dict:
    """What decides a cell's result: every result-relevant option, the data's
    fingerprint, the method, the sparsity, the seed and the resolved number of rounds."""
    rounds = _default_rounds(method, config.rounds)
    return {
        **result_settings(config, frozenset({"rounds"})),
        "data_fingerprint": data_digest,
        "method": method,
        "sparsity": sparsity,
        "seed": seed,
        "rounds": rounds,
    }


def run_prune_init(config: PruneInitConfig) -> dict:
    """Run every (seed, method, sparsity) and return the result records."""
    methods, sparsities, seeds = check_config(config)
    device, root = start_run(
        config, "prune-init", Path("runs") / "prune-init" / f"{config.model}-{config.dataset}"
    )
    records = []
    for seed in seeds:
        data = build_data(
            config.dataset,
            config.data_dir,
            config.batch_size,
            config.test_batch_size,
            seed,
            augment=config.augment,
            download=config.download,
            train_subset=config.train_subset,
            validation_size=config.validation_size,
            dataset_kwargs=config.dataset_kwargs,
        )
        data_digest = dataset_fingerprint(data.plain_train, data.test)
        initial = build_model(config.model, data.num_classes, config.model_kwargs, seed)
        initial_state = {k: v.clone() for k, v in initial.state_dict().items()}
        sample = class_balanced_batches(
            data.train, config.samples_per_class, config.num_iters, seed=seed
        )
        for method in methods:
            for sparsity in sparsities:
                records.append(
                    _run_one(
                        config,
                        data,
                        initial,
                        initial_state,
                        sample,
                        method,
                        sparsity,
                        seed,
                        root,
                        device,
                        data_digest,
                    )
                )
    text = write_summary(root, records, SUMMARY, "prune at init, then train", config.reference)
    tensorboard_tables(root, text, config.tensorboard)
    return {"run_dir": str(root), "table": str(root / "results.md")}


def _run_one(
    config, data, model, initial_state, sample, method, sparsity, seed, root, device, data_digest
):
    level = f"pattern-{config.pattern.replace(':', 'of')}" if config.pattern else ""
    cell = open_cell(
        root,
        [method, level or f"sparsity-{sparsity:g}", f"seed-{seed}"],
        cell_settings(config, method, sparsity, seed, data_digest),
    )
    folder = cell.folder
    finished = cell.finished()
    if finished is not None:
        logger.info("%s: finished with the same settings, reused", folder)
        return finished
    model.load_state_dict(initial_state)
    model.to(device)
    params = list(prunable_parameters(model, keep_classifier_dense=config.keep_classifier_dense))
    if (folder / "mask.pt").exists() and (folder / "score.json").exists():
        mask = load_mask(folder / "mask.pt")
        score_seconds = json.loads((folder / "score.json").read_text())["score_seconds"]
    else:
        torch.manual_seed(seed)
        started = time.perf_counter()
        mask = score_and_mask(
            method,
            model,
            sparsity,
            data=[(x.to(device), y.to(device)) for x, y in sample],
            rounds=1 if config.pattern else _default_rounds(method, config.rounds),
            scope=config.scope,
            params=params,
            pattern=config.pattern,
            **init_method_options(
                method, seed, config.grasp_temperature, config.grasp_reinit_xavier
            ),
        )
        score_seconds = time.perf_counter() - started
        save_mask(mask, folder / "mask.pt")
        write_json(folder / "score.json", {"score_seconds": score_seconds})
    checksum = agree_on_mask(mask, f"the mask of {folder}")
    report = sparsity_report(mask, model)
    report.save(folder / "sparsity.json")
    check_collapse(
        report.collapsed_layers,
        f"{method} at sparsity {sparsity:g} (seed {seed})",
        config.on_collapse,
        logger,
    )
    logger.info(
        "%s sparsity %g seed %d: scored in %.1fs\n%s",
        method,
        sparsity,
        seed,
        score_seconds,
        report.to_table(),
    )
    settings = training_settings(config, seed, config.progress)
    with tensorboard_log(folder / TENSORBOARD, config.tensorboard) as log:
        final = fit(
            model,
            data.train_loader,
            data.test_loader,
            settings,
            run_dir=folder,
            mask=mask,
            resume=True,
            device=device,
            on_epoch=None if log is None else log.epoch,
        )
    if not mask.holds_in(model):
        raise PrunekitError(f"internal error: the mask did not hold during training in {folder}")
    record = {
        "model": config.model,
        "method": method,
        "sparsity": sparsity,
        "seed": seed,
        "removed": mask.num_removed,
        "prunable": mask.num_total,
        "collapsed_layers": report.collapsed_layers,
        "mask_checksum": checksum,
        "score_seconds": score_seconds,
        "top1": final.get("test_top1"),
        "loss": final.get("test_loss"),
        # the best epoch is chosen on the validation split, never on the test set
        **(
            {k: final.get(k) for k in ("best_val_top1", "best_epoch")}
            if "best_val_top1" in final
            else {}
        ),
        "epochs": final.get("epoch"),
        **validation_metrics(model, data, device),
    }
    return cell.write_result(record)


SUMMARY = [
    ("Test top-1 accuracy (%) after training, mean ± std over seeds (final epoch).", "top1", 2),
    ("Validation top-1 (held-out training samples), final epoch.", "val_top1", 2),
]


COMMAND = {
    "name": "prune-init",
    "help": "prune at initialization (SNIP, GraSP, SynFlow, ...), then train",
    "description": "Initialise a model, score its weights on a class-balanced sample of the "
    "training set, remove exactly round(s·d) prunable weights, train with the mask held and "
    "evaluate; over several methods, sparsities and seeds.",
    "config_class": PruneInitConfig,
    "run": run_prune_init,
}
