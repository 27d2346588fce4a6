"""Building the pieces every pipeline needs: device, data loaders, model."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from prunekit.data import dataset_info, get_dataset, make_loader
from prunekit.errors import ConfigError, DataError
from prunekit.masks import Mask, nm_patterned, parse_pattern, prunable_parameters
from prunekit.models import create_model
from prunekit.models.registry import get_model_factory
from prunekit.pipelines.checks import check_config
from prunekit.pipelines.run_folder import prepare_run_folder
from prunekit.utils.distributed import (
    barrier,
    broadcast_,
    check_identical,
    is_distributed,
    is_main_process,
    local_rank,
)
from prunekit.utils.files import remove_stale_temp_files
from prunekit.utils.lock import lock_run_folder
from prunekit.utils.model_checks import check_finite_parameters


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available, else the CPU; under torchrun, ``auto`` and
    ``cuda`` mean this process's GPU, ``cuda:LOCAL_RANK``."""
    if name in ("auto", "cuda") and torch.cuda.is_available() and is_distributed():
        return torch.device("cuda", local_rank())
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use cpu, cuda, cuda:N or auto") from None


@dataclass
class DataBundle:
    train: Dataset
    test: Dataset
    train_loader: DataLoader
    test_loader: DataLoader
    num_classes: int
    input_shape: tuple[int, ...]
    plain_train: Dataset  # the same training samples, read without augmentation
    validation: Dataset | None = None
    validation_loader: DataLoader | None = None


def check_names(model: str, dataset: str) -> None:
    """Fail fast, before any data is read, on an unknown model or dataset name."""
    get_model_factory(model)
    dataset_info(dataset)


SPLIT_SEED = 0  # the validation / train-subset split: the same for every run seed


def build_data(
    dataset: str,
    data_dir: str | None,
    batch_size: int,
    test_batch_size: int,
    seed: int,
    augment: bool | None = None,
    download: bool = False,
    train_subset: int | None = None,
    dataset_kwargs: dict | None = None,
    validation_size: int = 0,
) -> DataBundle:
    """Train and test sets and loaders.

    ``validation_size`` holds out that many training samples (read without
    augmentation) as a validation set, to choose settings on training data only; the
    training set is the rest. ``train_subset`` then keeps the first n of the remaining
    training samples (for quick runs). Both come from one permutation seeded
    ``SPLIT_SEED``, not ``seed``: every seed of a call, and every call, sees the same
    split (a call with ``--seeds 3`` alone gives cell seed 3 exactly as ``--seeds 0 1 2
    3`` does). ``seed`` shuffles the training loader.
    """
    options = dict(dataset_kwargs or {})
    info = dataset_info(dataset, **options)  # unknown names fail here, before any reading
    train = get_dataset(
        dataset, root=data_dir, train=True, augment=augment, download=download, **options
    )
    test = get_dataset(
        dataset, root=data_dir, train=False, augment=False, download=download, **options
    )
    _check_not_empty(dataset, train, "training")
    _check_not_empty(dataset, test, "test")
    plain = (
        get_dataset(dataset, root=data_dir, train=True, augment=False, download=download, **options)
        if getattr(train, "augment", True)  # read again only when it augments (or may)
        else train
    )
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(SPLIT_SEED))
    validation = None
    if validation_size:
        if not 0 < validation_size < len(train):
            raise ConfigError(
                f"validation_size must be in [1, {len(train) - 1}] (the training set has "
                f"{len(train)} samples), got {validation_size}"
            )
        validation = Subset(plain, order[:validation_size].tolist())
        order = order[validation_size:]
    if train_subset is not None:
        if not 0 < train_subset <= len(order):
            raise ConfigError(f"train_subset must be in [1, {len(order)}], got {train_subset}")
        order = order[:train_subset]
    if validation_size or train_subset is not None:
        train, plain = Subset(train, order.tolist()), Subset(plain, order.tolist())
    return DataBundle(
        train=train,
        test=test,
        train_loader=make_loader(train, batch_size=batch_size, shuffle=True, seed=seed),
        test_loader=make_loader(test, batch_size=test_batch_size, shuffle=False, seed=seed),
        # image folders know their classes only once read
        num_classes=getattr(test, "num_classes", None) or info.num_classes,
        input_shape=tuple(info.input_shape),
        plain_train=plain,
        validation=validation,
        validation_loader=None
        if validation is None
        else make_loader(validation, batch_size=test_batch_size, shuffle=False, seed=seed),
    )


def _check_not_empty(name: str, split: Dataset, which: str) -> None:
    if len(split) == 0:  # type: ignore[arg-type]
        raise DataError(f"the {which} set of {name!r} holds no samples; check the data files")


def build_test_data(
    dataset: str,
    data_dir: str | None,
    test_batch_size: int,
    seed: int,
    download: bool = False,
    dataset_kwargs: dict | None = None,
) -> tuple[DataLoader, int]:
    """The test loader and the class count, reading the test split only (for eval)."""
    options = dict(dataset_kwargs or {})
    info = dataset_info(dataset, **options)
    test = get_dataset(
        dataset, root=data_dir, train=False, augment=False, download=download, **options
    )
    _check_not_empty(dataset, test, "test")
    loader = make_loader(test, batch_size=test_batch_size, shuffle=False, seed=seed)
    return loader, getattr(test, "num_classes", None) or info.num_classes


def validation_metrics(model: nn.Module, data: DataBundle, device, prefix: str = "val_") -> dict:
    """``{"val_top1", "val_loss"}`` on the held-out validation set, or ``{}`` without one."""
    if data.validation_loader is None:
        return {}
    from prunekit.training import evaluate

    metrics = evaluate(model, data.validation_loader, device, num_classes=data.num_classes)
    return {f"{prefix}{key}": value for key, value in metrics.items()}


def build_model(name: str, num_classes: int, model_kwargs: dict | None, seed: int) -> nn.Module:
    """A freshly initialised model; the seed fixes the initialisation."""
    torch.manual_seed(seed)
    kwargs = dict(model_kwargs or {})
    if kwargs.pop("num_classes", num_classes) != num_classes:
        raise ConfigError(
            f"model_kwargs num_classes does not match the data's {num_classes} classes; "
            "remove it (it is taken from the data)"
        )
    return create_model(name, num_classes=num_classes, **kwargs)


def prunable_shapes(config, **keep_dense: bool) -> dict[str, tuple[int, ...]] | None:
    """Shapes of the prunable parameters of ``config.model`` for ``config.dataset``,
    from a model on the ``meta`` device (no memory, no data read); None when the class
    count is known only once the data is read (image folders)."""
    info = dataset_info(config.dataset, **(config.dataset_kwargs or {}))
    if info.num_classes is None:
        return None
    kwargs = {k: v for k, v in (config.model_kwargs or {}).items() if k != "num_classes"}
    with torch.device("meta"):
        model = create_model(config.model, num_classes=info.num_classes, **kwargs)
    return {name: tuple(p.shape) for name, p in prunable_parameters(model, **keep_dense).items()}


def check_pattern_fits(pattern: str, shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """The layers an N:M ``pattern`` leaves dense; ConfigError when it fits none (it
    would remove nothing)."""
    n, m = parse_pattern(pattern)
    dense = [name for name, shape in shapes.items() if not nm_patterned(shape, m)]
    if len(dense) == len(shapes):
        widths = sorted({math.prod(shape[1:]) for shape in shapes.values()})
        raise ConfigError(
            f"the {n}:{m} pattern fits no prunable layer (input widths {widths[:6]}, none a "
            f"multiple of {m}): it would remove nothing; choose an M that divides a width"
        )
    return dense


def load_weights(model: nn.Module, path: str) -> nn.Module:
    """Load weights from a prunekit training checkpoint, a plain state_dict, a saved
    ``model.pt`` or a WoodFisher/CBS checkpoint (never executing pickled code).

    The file must fit the model (same keys and shapes, floating-point weights) and
    hold finite values; otherwise :class:`CheckpointError` or ``NonFiniteError``."""
    from prunekit.checkpoints import check_state_fits, load_foreign_checkpoint

    state = load_foreign_checkpoint(path)
    check_state_fits(model, state, path, type(model).__name__)
    model.load_state_dict(state)
    check_finite_parameters(model, f"loading {path}")
    return model


def prepare_process(config) -> torch.device:
    """Check names, apply ``config.threads`` and resolve the device, before any reading."""
    check_names(config.model, config.dataset)
    check_config(config)
    if config.threads:
        torch.set_num_threads(config.threads)
    return resolve_device(config.device)


def start_run(config, command: str, default_dir: Path) -> tuple[torch.device, Path]:
    """:func:`prepare_process`, then lock the run folder and write the run's config."""
    device = prepare_process(config)
    root = Path(config.run_dir) if config.run_dir else default_dir
    open_run_folder(root)
    prepare_run_folder(root, command, asdict(config), None)
    return device, root


def open_run_folder(root: Path) -> Path:
    """Take the folder's lock (one writer at a time), then remove the temporary files a
    killed run left there. Under ``torch.distributed`` rank 0 is the writer: only it
    locks and cleans, after which every rank goes on."""
    if is_main_process():
        lock_run_folder(root)
        remove_stale_temp_files(root)
    barrier()
    return root


def agree_on_mask(mask: Mask, what: str, weights: dict | None = None) -> int:
    """Under ``torch.distributed``: the mask (and new weights) rank 0 decided, sent to
    every process, and a checksum of what each process holds compared before anything
    trains on it. Returns the checksum (also without a process group)."""
    tensors = [mask[name] for name in sorted(mask)]
    if weights is not None:
        tensors += [weights[name] for name in sorted(weights)]
    broadcast_(tensors)
    return check_identical(tensors, what)
