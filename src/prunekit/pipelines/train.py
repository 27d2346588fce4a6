"""Dense (or masked) training and evaluation from a config."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, fields, replace
from pathlib import Path

from prunekit.deploy import is_exported, load_exported, sparse_layers, sparsify_for_inference
from prunekit.deploy.export import safetensors_metadata
from prunekit.errors import ConfigError
from prunekit.masks import load_mask, sparsity_report
from prunekit.pipelines.cells import changed_settings, result_settings, settings_hash
from prunekit.pipelines.configs import EvalCommandConfig, TrainCommandConfig, TrainingFields
from prunekit.pipelines.run_folder import prepare_run_folder, write_json
from prunekit.pipelines.setup import (
    build_data,
    build_model,
    build_test_data,
    load_weights,
    open_run_folder,
    prepare_process,
    validation_metrics,
)
from prunekit.reports.tensorboard import FOLDER as TENSORBOARD
from prunekit.reports.tensorboard import tensorboard_log
from prunekit.training import TrainConfig, evaluate, fit
from prunekit.training.trainer import check_resumable
from prunekit.utils.files import atomic_torch_save

logger = logging.getLogger(__name__)


def training_settings(config: TrainingFields, seed: int, progress: bool) -> TrainConfig:
    """The trainer's settings: every ``TrainConfig`` field the pipeline config has,
    copied by name (none is dropped), plus the seed and progress flag."""
    shared = {f.name for f in fields(TrainConfig)} & {f.name for f in fields(config)}
    values = {name: getattr(config, name) for name in shared}
    values["milestones"] = tuple(values.get("milestones", ()))
    return TrainConfig(**{**values, "seed": seed, "progress": progress, "log_every": 0})


def check_resumed_settings(run_dir: Path, config: TrainCommandConfig) -> None:
    """A resumed run must continue with the settings it started with (only ``epochs``
    may grow): they are stored in ``settings.json`` at the start and compared on
    ``--resume``."""
    settings = result_settings(config, frozenset({"epochs"}))
    stored = run_dir / "settings.json"
    if config.resume and stored.exists():
        previous = json.loads(stored.read_text())["settings"]
        changed = changed_settings(previous, settings)
        if changed:
            raise ConfigError(
                f"{run_dir} was started with other settings ({', '.join(changed)}); resume it "
                "with the same ones, or give another --run-dir for a new run"
            )
    elif not (run_dir / "checkpoint.pt").exists():
        write_json(stored, {"settings": settings, "hash": settings_hash(settings)})


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
    open_run_folder(run_dir)  # the folder's lock first, as prune and prune-init take it
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
    if config.resume:  # refuse another model, mask or settings before config.json changes
        check_resumable(model, run_dir, settings, mask)
    check_resumed_settings(run_dir, config)
    prepare_run_folder(run_dir, "train", asdict(config), config.seed)
    if mask is not None:
        report = sparsity_report(mask, model)
        report.save(run_dir / "sparsity.json")
        logger.info("training with mask %s\n%s", config.mask, report.to_table())
    with tensorboard_log(run_dir / TENSORBOARD, config.tensorboard) as log:
        final = fit(
            model,
            data.train_loader,
            data.test_loader,
            settings,
            run_dir=run_dir,
            mask=mask,
            resume=config.resume,
            device=device,
            validation_loader=data.validation_loader,
            on_epoch=None if log is None else log.epoch,
        )
    atomic_torch_save(model.state_dict(), run_dir / "model.pt")
    validation = validation_metrics(model, data, device)
    if validation:
        write_json(run_dir / "validation.json", validation)
    return {"run_dir": str(run_dir), **final, **validation}


def _with_exported_model(config: EvalCommandConfig) -> EvalCommandConfig:
    """For an export, the config with the model the file names (so that the checks of
    the model against the data name that model, not ``--model``'s default)."""
    if not is_exported(config.checkpoint):
        return config
    metadata = safetensors_metadata(config.checkpoint) or {}
    try:
        kwargs = json.loads(metadata.get("model_kwargs", "{}"))
    except ValueError:
        return config  # a corrupt export: load_exported says so
    name = metadata.get("model")
    if not isinstance(name, str) or not isinstance(kwargs, dict):
        return config
    return replace(config, model=name, model_kwargs=kwargs)


def run_eval(config: EvalCommandConfig) -> dict:
    """Evaluate saved weights (optionally under a mask) on the test set.

    A ``prunekit export`` file (recognised by its safetensors header) names its own
    model; ``--sparse`` evaluates with sparse CPU kernels where the layers are sparse.
    """
    if not config.checkpoint:
        raise ConfigError("eval needs --checkpoint PATH (weights to evaluate)")
    device = prepare_process(_with_exported_model(config))
    test_loader, num_classes = build_test_data(
        config.dataset,
        config.data_dir,
        config.test_batch_size,
        config.seed,
        download=config.download,
        dataset_kwargs=config.dataset_kwargs,
    )
    if is_exported(config.checkpoint):
        model = load_exported(config.checkpoint)  # the file names its model
        logger.info("%s: a prunekit export of %s", config.checkpoint, type(model).__name__)
    else:
        model = build_model(config.model, num_classes, config.model_kwargs, config.seed)
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
    result.update(evaluate(model, test_loader, device, num_classes=num_classes))
    if config.run_dir:
        open_run_folder(Path(config.run_dir))
        run_dir = prepare_run_folder(config.run_dir, "eval", asdict(config), config.seed)
        write_json(run_dir / "metrics.json", result)
    return result
