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

import copy
import logging
from pathlib import Path

import torch

from prunekit.errors import ConfigError
from prunekit.masks import prunable_parameters, save_mask, sparsity_report
from prunekit.methods.oneshot import canonical_name, get_method, prune_one_shot
from prunekit.methods.oneshot.evidence import gather_evidence, init_scorer
from prunekit.methods.oneshot.flat import flatten_weights
from prunekit.pipelines.cells import TRAINING_FIELDS, file_digest, open_cell, result_settings
from prunekit.pipelines.configs import OneShotConfig
from prunekit.pipelines.grid import check_grid
from prunekit.pipelines.run_folder import write_json, write_summary
from prunekit.pipelines.setup import build_data, build_model, load_weights, start_run
from prunekit.pipelines.train import training_settings
from prunekit.reports import results_table
from prunekit.training import evaluate, fit
from prunekit.utils.files import atomic_torch_save

logger = logging.getLogger(__name__)


def cell_settings(config: OneShotConfig, method: str, checkpoint_digest: str) -> dict:
    """What decides a cell's result: the config less what this method does not read
    (other methods' settings, training settings when nothing is fine-tuned)."""
    spec = get_method(method)
    drop = set() if config.epochs > 0 else set(TRAINING_FIELDS)
    if not spec.needs_fisher:
        drop.add("fisher")
    if "cbs_s" != spec.selection.name:
        drop.add("cbs")
    if spec.update.settings is None:
        drop.add("update")
    if spec.selection.name not in ("random", "snip", "grasp", "synflow"):
        drop.add("samples_per_class")
    settings = result_settings(config, frozenset(drop))
    return {**settings, "checkpoint_sha256": checkpoint_digest, "method": method}


def run_oneshot(config: OneShotConfig) -> dict:
    """Run every (seed, method, sparsity); returns where the results are."""
    if not config.checkpoint:
        raise ConfigError("prune needs --checkpoint PATH: the trained weights to prune")
    methods, sparsities, seeds = check_grid(
        config.methods, config.sparsities, config.seeds, canonical_name
    )
    if config.loss_samples < 1:
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
    dense_cell = open_cell(
        root,
        ["dense"],
        {
            **result_settings(
                config,
                frozenset(
                    TRAINING_FIELDS
                    | {"fisher", "cbs", "update", "loss_samples", "samples_per_class"}
                ),
            ),
            "checkpoint_sha256": digest,
        },
    )
    write_json(dense_cell.folder / "dense.json", dense)
    records = []
    for seed in seeds:
        cells = {
            (m, s): open_cell(
                root,
                [m.replace("+", "_plus_"), f"sparsity-{s:g}", f"seed-{seed}"],
                {**cell_settings(config, m, digest), "sparsity": s, "seed": seed},
            )
            for m in methods
            for s in sparsities
        }
        pending = {key: cell for key, cell in cells.items() if cell.finished() is None}
        for key, cell in cells.items():
            if key not in pending:
                logger.info("%s: finished with the same settings, reused", cell.folder)
        if pending:
            evidence = gather_evidence(
                trained,
                names,
                data.plain_train,
                fisher_settings=config.fisher,
                loss_samples=config.loss_samples,
                seed=seed,
                device=device,
                need_fisher=any(get_method(m).needs_fisher for m, _ in pending),
            )
        for (method, sparsity), cell in cells.items():
            record = cell.finished()
            if record is None:
                record = _prune_cell(
                    config,
                    trained,
                    names,
                    data,
                    dense,
                    evidence,
                    method,
                    sparsity,
                    seed,
                    cell,
                    device,
                )
            records.append(record)
    _write_summary(root, records, config.reference)
    return {"run_dir": str(root), "table": str(root / "results.md")}


def _prune_cell(
    config, trained, names, data, dense, evidence, method, sparsity, seed, cell, device
):
    """Prune, evaluate, write the cell's files, optionally fine-tune; the cell's record."""
    from prunekit.pipelines.setup import validation_metrics

    estimate = evidence.fisher
    result = prune_one_shot(
        trained,
        names,
        method,
        sparsity,
        fisher=None if estimate is None else estimate.fisher,
        training_loss=evidence.training_loss,
        init_scores=init_scorer(
            trained, names, sparsity, data.plain_train, config.samples_per_class, seed, device
        ),
        settings=[config.cbs, config.update],
        generator=torch.Generator().manual_seed(seed),
    )
    pruned = copy.deepcopy(trained)
    with torch.no_grad():
        for name, value in result.weights.items():
            pruned.get_parameter(name).copy_(value)
    if not result.mask.holds_in(pruned):
        raise AssertionError("pruned weights are not zero after the update")
    metrics = evaluate(pruned, data.test_loader, device, num_classes=data.num_classes)
    report = sparsity_report(result.mask, pruned)
    save_mask(result.mask, cell.folder / "mask.pt")
    report.save(cell.folder / "sparsity.json")
    atomic_torch_save(pruned.state_dict(), cell.folder / "pruned_model.pt")
    if result.search is not None:
        write_json(cell.folder / "search.json", result.search)
    record = {
        "model": config.model,
        "method": method,
        "sparsity": sparsity,
        "seed": seed,
        "top1": metrics["top1"],
        "loss": metrics["loss"],
        "train_loss": evidence.training_loss(flatten_weights(pruned, names)),
        "dense_top1": dense["top1"],
        **validation_metrics(pruned, data, device),
        "fisher_samples_used": None if estimate is None else estimate.samples_used,
        "gradient_seconds": 0.0 if estimate is None else estimate.seconds,
        "prune_seconds": result.record.selection_seconds + result.record.update_seconds,
        "collapsed_layers": report.collapsed_layers,
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
        final = fit(
            pruned,
            data.train_loader,
            data.test_loader,
            training_settings(config, seed, config.progress),
            run_dir=cell.folder / "finetune",
            mask=result.mask,
            resume=True,
            device=device,
        )
        record["finetuned_top1"] = final.get("test_top1")
        record["finetuned_loss"] = final.get("test_loss")
        record.update(validation_metrics(pruned, data, device, prefix="finetuned_val_"))
    return cell.write_result(record)


def _write_summary(root: Path, records: list[dict], reference: dict) -> None:
    text = (
        "One-shot pruning: test top-1 accuracy (%) without retraining, mean ± std over seeds.\n\n"
        + results_table(records, metric="top1", reference=reference)
        + "\n"
    )
    if any("val_top1" in r for r in records):
        text += "\nValidation top-1 (held-out training samples):\n\n"
        text += results_table(records, metric="val_top1") + "\n"
    if any("finetuned_top1" in r for r in records):
        text += "\nAfter fine-tuning:\n\n" + results_table(records, metric="finetuned_top1") + "\n"
    text += (
        "\nPruning time (s, selection + update):\n\n"
        + results_table(records, metric="prune_seconds", digits=1)
        + "\n"
    )
    write_summary(root, records, text, title="one-shot pruning")


COMMAND = {
    "name": "prune",
    "help": "one-shot prune a trained model (magnitude, WoodFisher/OBS, CBS), optionally fine-tune",
    "description": "Prune a trained checkpoint in one shot with second-order information: "
    "gradients on training data, a factored empirical Fisher, a selection (magnitude, OBS, "
    "CBS-S, ...) and an update (none, WoodFisher, CBS-U), over sparsities and seeds.",
    "config_class": OneShotConfig,
    "run": run_oneshot,
}
