"""Checks of a command's settings that run before any data is read or any work done:
numbers in range, and a model whose input and output fit the dataset."""

from __future__ import annotations

from typing import Any

import torch

from prunekit.data import dataset_info
from prunekit.errors import ConfigError, PrunekitError
from prunekit.models import create_model
from prunekit.utils.model_checks import output_width

MAX_SEED = 2**63 - 1


class LayerCollapseError(PrunekitError):
    """A mask removes every weight of a layer (``on_collapse="fail"``)."""


def check_collapse(collapsed: list[str], what: str, on_collapse: str, logger) -> None:
    """A mask that removes every weight of the layers ``collapsed`` cuts the network:
    :class:`LayerCollapseError` with ``on_collapse="fail"``, a warning with ``"warn"``."""
    if not collapsed:
        return
    message = (
        f"{what} removes every weight of {collapsed}: the network cannot pass signal "
        "(layer collapse)"
    )
    if on_collapse == "fail":
        raise LayerCollapseError(message + "; use --on-collapse warn to go on anyway")
    logger.warning("WARNING: %s", message)


def _positive(name: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or int(value) < 1):
        raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")


def check_seed(seed: Any) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"seeds must be integers in [0, 2**63 - 1], got {seed!r}")


def check_numbers(config: Any) -> None:
    """Batch sizes, thread count, subset and validation sizes, seeds: ConfigError if out of
    range. Reads whichever of these fields ``config`` has."""
    for name in ("batch_size", "test_batch_size", "threads", "train_subset"):
        _positive(name, getattr(config, name, None))
    validation = getattr(config, "validation_size", 0)
    if validation is not None and validation < 0:
        raise ConfigError(f"validation_size must be >= 0, got {validation}")
    seeds = list(getattr(config, "seeds", []) or [])
    if hasattr(config, "seed"):
        seeds.append(config.seed)
    for seed in seeds:
        check_seed(seed)


def check_model_fits_dataset(model: str, dataset: str, model_kwargs: dict, dataset_kwargs: dict):
    """The model takes the dataset's inputs and has one output per class; checked on the
    ``meta`` device (no memory, no computation) before any data is read."""
    info = dataset_info(dataset, **(dataset_kwargs or {}))
    kwargs = dict(model_kwargs or {})
    classes = info.num_classes
    if "num_classes" in kwargs:
        given = kwargs.pop("num_classes")
        if classes is not None and given != classes:
            raise ConfigError(
                f"model_kwargs num_classes={given!r} but dataset {dataset!r} has {classes} "
                "classes; remove num_classes from model_kwargs (it is taken from the data)"
            )
    with torch.device("meta"):
        net = create_model(model, num_classes=classes or 2, **kwargs)
        inputs = torch.zeros((2, *info.input_shape))
    try:
        width = output_width(net, inputs, f"dataset {dataset!r} inputs")
    except NotImplementedError:  # an operation without a meta kernel: checked later
        return
    except ConfigError as exc:
        raise ConfigError(f"{exc}; choose a model made for dataset {dataset!r}") from None
    if classes is not None and width != classes:
        raise ConfigError(
            f"model {model!r} has {width} outputs but dataset {dataset!r} has {classes} classes"
        )


def check_config(config: Any) -> None:
    """Every check above that applies to ``config``."""
    check_numbers(config)
    if getattr(config, "tensorboard", False):
        from prunekit.reports.tensorboard import require_tensorboard

        require_tensorboard()
    if hasattr(config, "model") and hasattr(config, "dataset"):
        check_model_fits_dataset(
            config.model,
            config.dataset,
            getattr(config, "model_kwargs", {}),
            getattr(config, "dataset_kwargs", {}),
        )
