"""One-shot pruning of a trained network over methods, sparsities and seeds.

For each seed: draw m training samples, compute their gradients at the trained weights
and build the factored empirical Fisher once; then for each method and sparsity select
exactly round(s·d) weights, apply the update, evaluate on the test set (no retraining)
and optionally fine-tune with the mask held. Masks, sparsity reports, per-run results
(accuracy, loss, timings) and a summary table go to the run folder; finished runs are
not redone. Every choice (gradient samples, CBS's real loss) uses training data only.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset

from prunekit.data import class_balanced_batches
from prunekit.errors import ConfigError
from prunekit.masks import check_sparsity, prunable_parameters, save_mask, sparsity_report
from prunekit.methods.init import score_and_mask
from prunekit.methods.oneshot import CBSSettings, needs_fisher, parse_method, prune_one_shot
from prunekit.methods.oneshot.flat import flatten_weights, layer_sizes
from prunekit.pipelines.configs import OneShotConfig
from prunekit.pipelines.prune_init import init_method_options
from prunekit.pipelines.run_folder import write_json, write_summary
from prunekit.pipelines.setup import (
    DataBundle,
    build_data,
    build_model,
    load_weights,
    start_run,
    validation_metrics,
)
from prunekit.pipelines.train import training_settings
from prunekit.reports import results_table
from prunekit.second_order import (
    EmpiricalFisher,
    chunk_blocks,
    minibatch_gradients,
    one_block,
    per_sample_gradients,
)
from prunekit.training import evaluate, fit

logger = logging.getLogger(__name__)


def fisher_blocks(spec: str, sizes: list[int]) -> list[tuple[int, int]]:
    """``full`` → one block; ``layer`` → one per layer; an integer → chunks of that size."""
    if spec == "full":
        return one_block(sum(sizes))
    if spec == "layer":
        return chunk_blocks(sizes, None)
    try:
        size = int(spec)
    except ValueError:
        raise ConfigError(
            f"fisher_blocks must be 'full', 'layer' or a chunk size, got {spec!r}"
        ) from None
    return chunk_blocks(sizes, size)


def check_config(config: OneShotConfig) -> None:
    if not config.checkpoint:
        raise ConfigError("prune needs --checkpoint PATH: the trained weights to prune")
    for method in config.methods:
        parse_method(method)
    for s in config.sparsities:
        check_sparsity(s)
    if config.fisher_samples < 1 or config.fisher_batch_size < 1 or config.loss_samples < 1:
        raise ConfigError("fisher_samples, fisher_batch_size and loss_samples must be >= 1")
    if not config.damp > 0:
        raise ConfigError(f"damp must be positive, got {config.damp}")
    if not config.seeds:
        raise ConfigError("give at least one seed")


def stack_samples(dataset, indices: list[int], batch_size: int = 1000) -> tuple[Tensor, Tensor]:
    """Inputs and targets of ``indices`` as two tensors."""
    loader = DataLoader(Subset(dataset, indices), batch_size=batch_size, shuffle=False)
    xs, ys = zip(*loader, strict=True)
    return torch.cat(xs), torch.cat(ys)


@torch.no_grad()
def mean_loss(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 2000) -> float:
    """Mean cross-entropy of ``model`` (eval mode) on ``(x, y)``."""
    was_training = model.training
    model.eval()
    total = 0.0
    for start in range(0, len(x), batch_size):
        logits = model(x[start : start + batch_size])
        total += float(F.cross_entropy(logits, y[start : start + batch_size], reduction="sum"))
    model.train(was_training)
    return total / len(x)


def make_loss_of_weights(model: nn.Module, names: list[str], x: Tensor, y: Tensor):
    """``loss(flat_w)``: training loss with the prunable weights set to ``flat_w``."""
    scratch = copy.deepcopy(model)
    params = [scratch.get_parameter(n) for n in names]

    def loss_of_weights(flat_w: Tensor) -> float:
        with torch.no_grad():
            start = 0
            for p in params:
                p.copy_(flat_w[start : start + p.numel()].reshape(p.shape))
                start += p.numel()
        return mean_loss(scratch, x, y)

    return loss_of_weights


def run_oneshot(config: OneShotConfig) -> dict:
    """Run every (seed, method, sparsity); returns where the results are."""
    check_config(config)
    default_dir = Path("runs") / "prune" / f"{config.model}-{config.dataset}"
    device, root = start_run(config, "prune", default_dir)
    data = build_data(
        config.dataset,
        config.data_dir,
        config.batch_size,
        config.test_batch_size,
        config.seeds[0],
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
    write_json(root / "dense.json", dense)
    run = _Run(
        config=config,
        trained=trained,
        names=names,
        data=data,
        dense=dense,
        root=root,
        device=device,
        dtype=torch.float64 if config.fisher_dtype == "float64" else torch.float32,
    )
    records = []
    for seed in config.seeds:
        records.extend(_run_seed(run, seed))
    _write_summary(root, records, config.reference)
    return {"run_dir": str(root), "table": str(root / "results.md")}


@dataclass
class _Run:
    """What every (seed, method, sparsity) of one ``prune`` call shares."""

    config: OneShotConfig
    trained: nn.Module
    names: list[str]
    data: DataBundle
    dense: dict
    root: Path
    device: torch.device
    dtype: torch.dtype


@dataclass
class _SeedState:
    """What the runs of one seed share: the Fisher of its gradient sample, its loss."""

    seed: int
    fisher: EmpiricalFisher | None
    loss_of_weights: Callable[[Tensor], float]
    gradient_seconds: float
    cbs: CBSSettings


def _run_seed(run: _Run, seed: int) -> list[dict]:
    config, trained, names = run.config, run.trained, run.names
    plain_train = run.data.plain_train
    root, device = run.root, run.device
    pending = [
        (method, sparsity)
        for method in config.methods
        for sparsity in config.sparsities
        if not (_folder(root, method, sparsity, seed) / "result.json").exists()
    ]
    records_done = [
        json.loads((_folder(root, m, s, seed) / "result.json").read_text())
        for m in config.methods
        for s in config.sparsities
        if (m, s) not in pending
    ]
    if not pending:
        return records_done
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(plain_train), generator=generator).tolist()
    count = min(config.fisher_samples * config.fisher_batch_size, len(plain_train))
    loss_x, loss_y = stack_samples(plain_train, order[: min(config.loss_samples, len(order))])
    loss_x, loss_y = loss_x.to(device), loss_y.to(device)
    loss_of_weights = make_loss_of_weights(trained, names, loss_x, loss_y)
    fisher, gradient_seconds = None, 0.0
    if any(needs_fisher(m) for m, _ in pending):
        started = time.perf_counter()
        x, y = stack_samples(plain_train, order[:count])
        x, y = x.to(device), y.to(device)
        if config.fisher_batch_size == 1:
            grads = per_sample_gradients(trained, names, x, y)
        else:
            grads = minibatch_gradients(trained, names, x, y, config.fisher_batch_size)
        gradient_seconds = time.perf_counter() - started
        blocks = fisher_blocks(config.fisher_blocks, layer_sizes(trained, names))
        fisher = EmpiricalFisher(grads, config.damp, blocks, dtype=run.dtype)
        logger.info(
            "seed %d: %d gradients of %d weights in %.1fs, %d Fisher block(s)",
            seed,
            grads.shape[0],
            grads.shape[1],
            gradient_seconds,
            len(blocks),
        )
    cbs = CBSSettings(
        swap_threshold=config.swap_threshold,
        rank_window=config.rank_window,
        max_failures=config.max_failures,
        max_passes=config.max_passes,
        patience=config.patience,
        start=config.cbs_start,
        rmp_trials=config.rmp_trials,
        update_scale=config.update_scale,
        update_scale_grid=tuple(config.update_scale_grid),
        score_with_update=config.cbs_score_with_update,
    )
    state = _SeedState(seed, fisher, loss_of_weights, gradient_seconds, cbs)
    records = list(records_done)
    for method, sparsity in pending:
        records.append(_run_one(run, state, method, sparsity))
    return records


def _folder(root: Path, method: str, sparsity: float, seed: int) -> Path:
    return root / method.replace("+", "_plus_") / f"sparsity-{sparsity:g}" / f"seed-{seed}"


def _init_scores(config, model, names, sparsity, seed, plain_train, device):
    """Pruning-at-init scores of the trained model, on a class-balanced training sample."""

    def scores(selection: str):
        sample = class_balanced_batches(plain_train, config.samples_per_class, 1, seed=seed)
        return score_and_mask(
            selection,
            model,
            sparsity,
            data=[(x.to(device), y.to(device)) for x, y in sample],
            params=names,
            **init_method_options(selection, seed),
        )

    return scores


def _run_one(run: _Run, state: _SeedState, method: str, sparsity: float) -> dict:
    config, trained, names, data, device = run.config, run.trained, run.names, run.data, run.device
    seed, fisher, loss_of_weights = state.seed, state.fisher, state.loss_of_weights
    folder = _folder(run.root, method, sparsity, seed)
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    result = prune_one_shot(
        trained,
        names,
        method,
        sparsity,
        fisher=fisher,
        loss_of_weights=loss_of_weights,
        init_scores=_init_scores(config, trained, names, sparsity, seed, data.plain_train, device),
        cbs=state.cbs,
        update_solver=config.update_solver,
        generator=torch.Generator().manual_seed(seed),
    )
    prune_seconds = time.perf_counter() - started
    pruned = copy.deepcopy(trained)
    with torch.no_grad():
        for name, value in result.weights.items():
            pruned.get_parameter(name).copy_(value)
    if not result.mask.holds_in(pruned):
        raise AssertionError("pruned weights are not zero after the update")
    metrics = evaluate(pruned, data.test_loader, device, num_classes=data.num_classes)
    flat = flatten_weights(pruned, names)
    train_loss = loss_of_weights(flat)
    save_mask(result.mask, folder / "mask.pt")
    report = sparsity_report(result.mask, pruned)
    report.save(folder / "sparsity.json")
    torch.save(pruned.state_dict(), folder / "pruned_model.pt")
    info = {k: v for k, v in result.info.items() if k != "cbs_history"}
    if "cbs_history" in result.info:
        write_json(folder / "cbs_history.json", result.info["cbs_history"])
    record = {
        "model": config.model,
        "method": method,
        "sparsity": sparsity,
        "seed": seed,
        "top1": metrics["top1"],
        "loss": metrics["loss"],
        "train_loss": train_loss,
        "dense_top1": run.dense["top1"],
        **validation_metrics(pruned, run.data, device),
        "gradient_seconds": state.gradient_seconds,
        "prune_seconds": prune_seconds,
        "collapsed_layers": report.collapsed_layers,
        **info,
    }
    logger.info(
        "%s sparsity %g seed %d: top1 %.2f (dense %.2f), removed %d/%d, %.1fs",
        method,
        sparsity,
        seed,
        metrics["top1"],
        run.dense["top1"],
        info["removed"],
        info["prunable"],
        prune_seconds,
    )
    if config.epochs > 0:
        settings = training_settings(config, seed, config.progress)
        final = fit(
            pruned,
            data.train_loader,
            data.test_loader,
            settings,
            run_dir=folder / "finetune",
            mask=result.mask,
            resume=True,
            device=device,
        )
        record["finetuned_top1"] = final.get("test_top1")
        record["finetuned_loss"] = final.get("test_loss")
        record.update(validation_metrics(pruned, run.data, device, prefix="finetuned_val_"))
    write_json(folder / "result.json", record)
    return record


def _write_summary(root: Path, records: list[dict], reference: dict) -> None:
    text = (
        "One-shot pruning: test top-1 accuracy (%) without retraining, mean ± std over seeds.\n\n"
        + results_table(records, metric="top1", reference=reference)
        + "\n"
    )
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
