"""Dense (or masked) training and evaluation from a config."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import torch

from prunekit.deploy import is_exported, load_exported, sparse_layers, sparsify_for_inference
from prunekit.errors import ConfigError
from prunekit.masks import load_mask, sparsity_report
from prunekit.pipelines.configs import EvalCommandConfig, TrainCommandConfig, TrainingFields
from prunekit.pipelines.run_folder import prepare_run_folder, write_json
from prunekit.pipelines.setup import (
    build_data,
    build_model,
    load_weights,
    prepare_process,
    validation_metrics,
)
from prunekit.training import TrainConfig, evaluate, fit

logger = logging.getLogger(__name__)


def training_settings(config: TrainingFields, seed: int, progress: bool) -> TrainConfig:
    """The trainer's settings taken from a pipeline config."""
    return TrainConfig(
        epochs=config.epochs,
        optimizer=config.optimizer,
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov,
        weight_decay=config.weight_decay,
        scheduler=config.scheduler,
        milestones=tuple(config.milestones),
        seed=seed,
        progress=progress,
        log_every=0,
    )


def default_run_dir(command: str, model: str, dataset: str, suffix: str = "") -> Path:
    return Path("runs") / command / f"{model}-{dataset}{suffix}"


def run_train(config: TrainCommandConfig) -> dict:
    """Train ``config.model`` on ``config.dataset`` (holding ``config.mask`` if given)."""
    device = prepare_process(config)
    settings = training_settings(config, config.seed, config.progress)  # validates early
    run_dir = (
        Path(config.run_dir)
        if config.run_dir
        else default_run_dir("train", config.model, config.dataset, f"-seed{config.seed}")
    )
    data = build_data(
        config.dataset,
        config.data_dir,
        config.batch_size,
        config.test_batch_size,
        config.seed,
        augment=config.augment,
        download=config.download,
        train_subset=config.train_subset,
        validation_size=config.validation_size,
        dataset_kwargs=config.dataset_kwargs,
    )
    model = build_model(config.model, data.num_classes, config.model_kwargs, config.seed)
    if config.init_checkpoint:
        load_weights(model, config.init_checkpoint)
    mask = None
    if config.mask:
        mask = load_mask(config.mask)
        mask.check_compatible(model)
    if (run_dir / "checkpoint.pt").exists() and not config.resume:
        raise ConfigError(
            f"{run_dir} already holds a training run: add --resume to continue it, "
            "or give another --run-dir"
        )
    prepare_run_folder(run_dir, "train", asdict(config), config.seed)
    if mask is not None:
        report = sparsity_report(mask, model)
        report.save(run_dir / "sparsity.json")
        logger.info("training with mask %s\n%s", config.mask, report.to_table())
    final = fit(
        model,
        data.train_loader,
        data.test_loader,
        settings,
        run_dir=run_dir,
        mask=mask,
        resume=config.resume,
        device=device,
    )
    torch.save(model.state_dict(), run_dir / "model.pt")
    validation = validation_metrics(model, data, device)
    if validation:
        write_json(run_dir / "validation.json", validation)
    return {"run_dir": str(run_dir), **final, **validation}


def run_eval(config: EvalCommandConfig) -> dict:
    """Evaluate saved weights (optionally under a mask) on the test set.

    A ``prunekit export`` file (recognised by its safetensors header) names its own
    model; ``--sparse`` evaluates with sparse CPU kernels where the layers are sparse.
    """
    if not config.checkpoint:
        raise ConfigError("eval needs --checkpoint PATH (weights to evaluate)")
    device = prepare_process(config)
    data = build_data(
        config.dataset,
        config.data_dir,
        config.batch_size,
        config.test_batch_size,
        config.seed,
        augment=False,
        download=config.download,
    )
    if is_exported(config.checkpoint):
        model = load_exported(config.checkpoint)  # the file names its model
        logger.info("%s: a prunekit export of %s", config.checkpoint, type(model).__name__)
    else:
        model = build_model(config.model, data.num_classes, config.model_kwargs, config.seed)
        load_weights(model, config.checkpoint)
    result: dict = {}
    if config.mask:
        mask = load_mask(config.mask)
        mask.apply(model)
        result["sparsity"] = mask.sparsity
    model.to(device)
    if config.sparse:
        if device.type != "cpu":
            raise ConfigError("--sparse computes with CPU sparse kernels: add --device cpu")
        model = sparsify_for_inference(model)
        result["sparse_layers"] = sparse_layers(model)
    result.update(evaluate(model, data.test_loader, device, num_classes=data.num_classes))
    if config.run_dir:
        run_dir = prepare_run_folder(config.run_dir, "eval", asdict(config), config.seed)
        write_json(run_dir / "metrics.json", result)
    return result
