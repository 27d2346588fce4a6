"""``fit``: train a model, holding a pruning mask, with checkpoints, logs and resume.

A run folder holds:

- ``checkpoint.pt``: the state after the last completed epoch (atomic, ``weights_only``)
- ``log.jsonl``: one JSON object per epoch (epoch, lr, train and test metrics, seconds)
- ``final.json``: the final metrics, written once all epochs are done

Under ``torch.distributed`` the model is wrapped in DistributedDataParallel and only
rank 0 writes files; the mask is held through optimizer hooks, identically on every rank.
"""

from __future__ import annotations

import json
import logging
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from prunekit.errors import CheckpointError, ConfigError
from prunekit.masks import Mask, MaskEnforcer
from prunekit.training.checkpoint import load_checkpoint, save_checkpoint
from prunekit.training.distributed import is_distributed, is_main_process
from prunekit.training.loop import evaluate, train_one_epoch
from prunekit.training.optim import (
    OPTIMIZERS,
    SCHEDULERS,
    build_optimizer,
    build_scheduler,
    check_choice,
    milestone_epochs,
)
from prunekit.training.seeding import get_rng_state, seed_everything, set_rng_state
from prunekit.utils.files import atomic_write_text
from prunekit.utils.model_checks import check_finite_parameters

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
LOG_NAME = "log.jsonl"
FINAL_NAME = "final.json"

# settings a resumed run may change; every other one must match the checkpoint
RESUMABLE_CHANGES = ("epochs", "progress", "log_every")


@dataclass
class TrainConfig:
    """Training settings. ``milestones`` are fractions of ``epochs`` (multistep only);
    ``step_size`` is in epochs (step only); ``log_every`` is in steps (0: never)."""

    epochs: int = 10
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    scheduler: str = "multistep"
    milestones: tuple[float, ...] = (0.5, 0.75)
    step_size: int | None = None
    gamma: float = 0.1
    seed: int = 0
    progress: bool = True
    log_every: int = 20

    def __post_init__(self) -> None:
        check_choice(self.optimizer, OPTIMIZERS, "optimizer")
        check_choice(self.scheduler, SCHEDULERS, "scheduler")
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ConfigError(f"epochs must be an integer >= 1, got {self.epochs!r}")
        if self.log_every < 0:
            raise ConfigError(f"log_every must be >= 0, got {self.log_every}")
        for name in ("lr", "momentum", "weight_decay", "gamma"):
            if not math.isfinite(float(getattr(self, name))):
                raise ConfigError(f"{name} must be a finite number, got {getattr(self, name)}")
        self.milestones = tuple(float(f) for f in self.milestones)
        if self.scheduler == "multistep":
            milestone_epochs(self.milestones, self.epochs)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"unknown training setting(s) {unknown}; valid: {', '.join(known)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["milestones"] = list(self.milestones)
        return out


def fit(
    model: nn.Module,
    train_loader: DataLoader,
    test_loader: DataLoader | None,
    config: TrainConfig,
    run_dir: str | Path | None = None,
    mask: Mask | None = None,
    resume: bool = False,
    device: torch.device | str = "cpu",
    validation_loader: DataLoader | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train ``model`` for ``config.epochs`` epochs, keeping ``mask``'s removed weights at zero.

    With ``run_dir``, a checkpoint and a log line are written after every epoch and
    ``final.json`` at the end. ``resume=True`` continues from ``run_dir/checkpoint.pt``
    (weights, optimizer, schedule, epoch and RNG state, so the data order continues) or
    starts afresh when there is none; it refuses a checkpoint trained with another mask
    or other settings (only ``epochs``, ``progress`` and ``log_every`` may change), and a
    run that already completed ``config.epochs`` is not redone. Without ``resume``, a
    folder that already holds a run is refused.

    The global RNGs are seeded with ``config.seed`` when training starts; a data loader's
    own generator (``DataLoader(generator=...)``) is left as the caller seeded it.

    Returns the final metrics: the last epoch's record (``epoch``, ``train_loss``,
    ``train_top1``, ``test_loss``, ``test_top1``, ``test_top5`` with more than 10
    classes, ``val_loss``, ``val_top1`` with a ``validation_loader``) and the mask's
    ``sparsity``. With a ``validation_loader`` the best epoch is chosen on it
    (``best_epoch``, ``best_val_top1``); without one no best epoch is reported, since a
    number chosen on the test set would not be a test result.

    Non-finite weights (before training or from a step), inputs or losses stop the
    run with :class:`~prunekit.errors.NonFiniteError` naming the epoch and step.

    ``on_epoch(record)`` is called with each epoch's record once it is complete (in every
    process; a pipeline's TensorBoard log, for instance).
    """
    device = torch.device(device)
    mask = mask if mask else None
    run_dir = Path(run_dir) if run_dir is not None else None
    main = is_main_process()

    state = _preflight(run_dir, resume, mask, config)
    if is_distributed():
        dist.barrier()  # every rank has read the folder before rank 0 writes to it

    model.to(device)
    enforcer = MaskEnforcer(model, mask) if mask is not None else None
    if state is not None:
        _check_same_model(model, state["model"], run_dir / CHECKPOINT_NAME)
        model.load_state_dict(state["model"])
        if state["epoch"] >= config.epochs:
            return _already_finished(state, run_dir, mask, main)

    train_model: nn.Module = model
    if is_distributed():
        ids = [device.index or 0] if device.type == "cuda" else None
        train_model = DistributedDataParallel(model, device_ids=ids)
    optimizer = build_optimizer(
        train_model.parameters(),
        config.optimizer,
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov,
        weight_decay=config.weight_decay,
    )
    if enforcer is not None:
        enforcer.attach(optimizer)
    scheduler = _build_scheduler(optimizer, config)
    generators = _data_generators(train_loader)

    check_finite_parameters(model, "before training")
    if state is None:
        start_epoch, last, best = 0, None, None
        seed_everything(config.seed)
        if main and run_dir is not None:
            atomic_write_text(run_dir / LOG_NAME, "")
    else:
        start_epoch = state["epoch"]
        last, best = state["metrics"]["last"], state["metrics"].get("best")
        optimizer.load_state_dict(state["optimizer"])
        scheduler = _restore_scheduler(scheduler, optimizer, state, config)
        set_rng_state(state["rng"], generators)
        if main:
            _trim_log(run_dir / LOG_NAME, start_epoch)
        logger.info("resuming %s at epoch %d/%d", run_dir, start_epoch + 1, config.epochs)

    for epoch in range(start_epoch, config.epochs):
        set_epoch = getattr(train_loader.sampler, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)
        started = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        train = train_one_epoch(
            train_model,
            train_loader,
            optimizer,
            device,
            progress=config.progress and main,
            desc=f"epoch {epoch + 1}/{config.epochs}",
            log_every=config.log_every,
        )
        check_finite_parameters(train_model, f"after epoch {epoch + 1}")
        scheduler.step()
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "lr": lr,
            "train_loss": train["loss"],
            "train_top1": train["top1"],
        }
        if test_loader is not None:
            test = evaluate(model, test_loader, device)
            record.update({f"test_{k}": v for k, v in test.items()})
        if validation_loader is not None:
            val = evaluate(model, validation_loader, device)
            record.update({f"val_{k}": v for k, v in val.items()})
            if best is None or record["val_top1"] > best.get("val_top1", -math.inf):
                best = record
        record["seconds"] = time.perf_counter() - started
        last = record
        logger.info("%s", _describe(record))
        if on_epoch is not None:
            on_epoch(record)
        if main and run_dir is not None:
            with open(run_dir / LOG_NAME, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
            save_checkpoint(
                run_dir / CHECKPOINT_NAME,
                epoch=epoch + 1,
                model_state=model.state_dict(),
                optimizer_state=optimizer.state_dict(),
                scheduler_state=scheduler.state_dict(),
                mask=mask,
                metrics={"last": last, "best": best},
                rng=get_rng_state(generators),
                config=config.to_dict(),
            )

    if enforcer is not None:
        enforcer.detach()
    final = _final_metrics(last, best, mask)
    if main and run_dir is not None:
        atomic_write_text(run_dir / FINAL_NAME, json.dumps(final, indent=2))
    return final


def check_resumable(
    model: nn.Module, run_dir: str | Path, config: TrainConfig, mask: Mask | None = None
) -> None:
    """Raise the error ``fit(..., resume=True)`` would raise for this folder (another
    mask, other settings, another model), before anything is written to it."""
    path = Path(run_dir)
    state = _preflight(path, True, mask if mask else None, config)
    if state is not None:
        _check_same_model(model, state["model"], path / CHECKPOINT_NAME)


# --- helpers -------------------------------------------------------------------------


def _preflight(
    run_dir: Path | None, resume: bool, mask: Mask | None, config: TrainConfig
) -> dict | None:
    """The checkpoint to resume from (checked against ``mask`` and ``config``), or None."""
    if run_dir is None:
        if resume:
            raise ConfigError("resume=True needs a run_dir to resume from")
        return None
    checkpoint = run_dir / CHECKPOINT_NAME
    if not resume:
        if checkpoint.exists() or (run_dir / FINAL_NAME).exists():
            raise ConfigError(
                f"{run_dir} already holds a training run; pass resume=True to continue it "
                "or choose another folder"
            )
        return None
    if not checkpoint.exists():
        return None
    state = load_checkpoint(checkpoint)
    _check_same_mask(state["mask"], mask, checkpoint)
    _check_same_config(state["config"], config, checkpoint)
    return state


def _check_same_mask(saved: Mask | None, given: Mask | None, path: Path) -> None:
    def describe(m: Mask | None) -> str:
        if m is None:
            return "no mask (dense)"
        return f"a mask over {len(m)} tensors keeping {m.num_kept}/{m.num_total} weights"

    if saved is None and given is None:
        return
    if saved is not None and given is not None and saved.equal(given.to("cpu")):
        return
    raise ConfigError(
        f"cannot resume {path}: it was trained with {describe(saved)}, but "
        f"{describe(given)} was given; "
        "resume with the same mask or use another run folder"
    )


def _check_same_config(saved: dict, config: TrainConfig, path: Path) -> None:
    current = config.to_dict()
    changed = [
        f"{k} {saved.get(k)!r} → {v!r}"
        for k, v in current.items()
        if k not in RESUMABLE_CHANGES and saved.get(k) != v
    ]
    if changed:
        raise ConfigError(
            f"cannot resume {path} with different settings ({'; '.join(changed)}); "
            f"only {', '.join(RESUMABLE_CHANGES)} may change"
        )


def _build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig):
    return build_scheduler(
        optimizer,
        config.scheduler,
        epochs=config.epochs,
        milestones=config.milestones,
        step_size=config.step_size,
        gamma=config.gamma,
    )


def _restore_scheduler(scheduler, optimizer: torch.optim.Optimizer, state: dict, config):
    saved_epochs = state["config"]["epochs"]
    if saved_epochs == config.epochs or config.scheduler in ("step", "constant"):
        scheduler.load_state_dict(state["scheduler"])
        return scheduler
    # the schedule depends on the total: recompute it for the new total, at this epoch
    logger.warning(
        "epochs changed from %d to %d: the %s schedule is recomputed for %d epochs",
        saved_epochs,
        config.epochs,
        config.scheduler,
        config.epochs,
    )
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"]
    scheduler = _build_scheduler(optimizer, config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()"
        for _ in range(state["epoch"]):
            scheduler.step()
    return scheduler


def _data_generators(loader: DataLoader) -> list[torch.Generator]:
    """The loader's own RNGs (shuffling, worker seeds), each once."""
    sampler = getattr(loader, "sampler", None)
    batch_sampler = getattr(loader, "batch_sampler", None)
    candidates = [
        getattr(loader, "generator", None),
        getattr(sampler, "generator", None),
        getattr(getattr(batch_sampler, "sampler", None), "generator", None),
    ]
    found: list[torch.Generator] = []
    for g in candidates:
        if isinstance(g, torch.Generator) and all(g is not f for f in found):
            found.append(g)
    return found


def _trim_log(path: Path, epochs_done: int) -> None:
    """Keep the log lines of the epochs in the checkpoint (drop any written after it)."""
    kept = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line)["epoch"] <= epochs_done:
                    kept.append(line)
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a crash
    atomic_write_text(path, "".join(line + "\n" for line in kept))


def _check_same_model(model: nn.Module, saved: dict, path: Path) -> None:
    own = model.state_dict()
    differ = [k for k in own if k not in saved or saved[k].shape != own[k].shape]
    differ += [k for k in saved if k not in own]
    if differ:
        raise CheckpointError(
            f"cannot resume {path}: it holds weights of another model ({', '.join(differ[:3])} "
            f"differ from {type(model).__name__}); resume with the same --model or use "
            "another run folder"
        )


def _describe(record: dict) -> str:
    parts = [f"epoch {record['epoch']}", f"lr {record['lr']:.4g}"]
    parts += [
        f"{k} {v:.4f}" for k, v in record.items() if k.startswith(("train_", "test_", "val_"))
    ]
    return ", ".join(parts) + f" ({record['seconds']:.1f}s)"


def _final_metrics(last: dict, best: dict | None, mask: Mask | None) -> dict[str, Any]:
    final = {k: v for k, v in last.items() if k not in ("lr", "seconds")}
    if best is not None and "val_top1" in best:  # chosen on validation data only
        final["best_epoch"] = best["epoch"]
        final["best_val_top1"] = best["val_top1"]
    final["sparsity"] = mask.sparsity if mask is not None else 0.0
    return final


def _already_finished(state: dict, run_dir: Path, mask: Mask | None, main: bool) -> dict:
    final_path = run_dir / FINAL_NAME
    if final_path.exists():
        try:
            return json.loads(final_path.read_text(encoding="utf-8"))
        except ValueError:
            pass  # rewritten below from the checkpoint
    metrics = state["metrics"]
    if not metrics.get("last"):
        raise CheckpointError(f"{run_dir / CHECKPOINT_NAME} is finished but holds no metrics")
    final = _final_metrics(metrics["last"], metrics.get("best"), mask)
    if main:
        atomic_write_text(final_path, json.dumps(final, indent=2))
    return final
