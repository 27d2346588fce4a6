"""``prunekit export CELL OUT``: a pruned model as a compact safetensors file.

The source is a run cell folder, as ``prunekit prune`` and ``prune-init`` write it (its
own ``mask.pt`` and weights, looked up inside the folder only, in the order of
:data:`WEIGHT_FILES`), or any checkpoint file prunekit loads. The model name and options
come from ``--model`` or the nearest ``config.json`` at or above the source. The file is
read back after writing and compared with the masked model, tensor by tensor.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from prunekit.checkpoints import read_foreign_checkpoint
from prunekit.deploy import dense_size_bytes, export_pruned, read_exported
from prunekit.errors import CheckpointError, ConfigError, PrunekitError
from prunekit.masks import Mask, load_mask, prunable_parameters
from prunekit.models import classifier_name, create_model
from prunekit.pipelines.configs import ExportConfig
from prunekit.pipelines.setup import load_weights

logger = logging.getLogger(__name__)

# Weights of a cell, first found wins: the trained (or fine-tuned) model before the
# one-shot result it started from.
WEIGHT_FILES = ("checkpoint.pt", "finetune/checkpoint.pt", "pruned_model.pt", "model.pt")


def locate_cell_files(folder: Path) -> tuple[Path, Path | None]:
    """(weights, mask or None) inside a run cell ``folder``."""
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            mask = folder / "mask.pt"
            return folder / name, mask if mask.is_file() else None
    raise ConfigError(
        f"{folder} holds none of {', '.join(WEIGHT_FILES)}: give the folder of one "
        "(method, sparsity, seed) cell, or a checkpoint file"
    )


def find_run_config(start: Path) -> dict | None:
    """The ``config`` of the nearest ``config.json`` at or above ``start`` naming a model."""
    folder = start if start.is_dir() else start.parent
    for candidate in [folder, *folder.resolve().parents]:
        path = candidate / "config.json"
        if path.is_file():
            try:
                config = json.loads(path.read_text()).get("config", {})
            except (ValueError, AttributeError):
                continue
            if isinstance(config, dict) and isinstance(config.get("model"), str):
                return config
    return None


def _model_settings(config: ExportConfig, source: Path) -> tuple[str, dict]:
    if config.model:
        return config.model, dict(config.model_kwargs)
    found = find_run_config(source)
    if found is None:
        raise ConfigError(
            f"no config.json naming the model at or above {source}: give --model NAME"
        )
    return found["model"], {**(found.get("model_kwargs") or {}), **config.model_kwargs}


def _num_classes(weights: Path, name: str, kwargs: dict) -> int:
    with torch.device("meta"):
        skeleton = create_model(name, **kwargs)
    key = f"{classifier_name(skeleton)}.weight"
    state = read_foreign_checkpoint(weights).state_dict
    if key not in state:
        raise CheckpointError(f"{weights} has no {key}: is it a checkpoint of {name}?")
    return int(state[key].shape[0])


def _choose_mask(config: ExportConfig, model, weights: Path, cell_mask: Path | None) -> Mask:
    if config.mask:
        return load_mask(config.mask)
    if cell_mask is not None:
        return load_mask(cell_mask)
    own = read_foreign_checkpoint(weights).mask
    if own is not None:
        return own
    logger.info("no mask given: the exact zeros of the prunable weights are taken as removed")
    return Mask({n: p.detach() != 0 for n, p in prunable_parameters(model).items()})


def run_cell_holding(path: Path) -> Path | None:
    """The run cell folder (``settings-<hash>`` with its ``settings.json``) that ``path``
    lies in, at any depth, or None."""
    for folder in [path.parent, *path.parent.parents]:
        if folder.name.startswith("settings-") and (folder / "settings.json").is_file():
            return folder
    return None


def check_out_path(out: Path, inputs: list[Path], overwrite: bool) -> None:
    """OUT is never an input (source, weights, mask), never inside a run cell, and
    replaces an existing file only with ``overwrite``."""
    target = out.resolve()
    for path in inputs:
        if path.resolve() == target:
            raise ConfigError(f"OUT {out} is the export's own input {path}: give another OUT")
    cell = run_cell_holding(target)
    if cell is not None:
        raise ConfigError(
            f"OUT {out} lies inside the run cell {cell}, whose files prunekit reads and "
            "reuses: write the export outside the run folder's cells"
        )
    if out.is_dir():
        raise ConfigError(f"OUT {out} is a folder: give the .safetensors file to write")
    if out.exists() and not overwrite:
        raise ConfigError(f"OUT {out} already exists: add --overwrite to replace it")


def run_export(config: ExportConfig) -> dict:
    """Export ``config.source`` to ``config.out``; returns sizes and the sparsity."""
    if not config.source or not config.out:
        raise ConfigError("usage: prunekit export CELL_OR_CHECKPOINT OUT.safetensors")
    source, out = Path(config.source), Path(config.out)
    if source.is_dir():
        weights, cell_mask = locate_cell_files(source)
    elif source.is_file():
        weights, cell_mask = source, None
    else:
        raise ConfigError(f"{source} does not exist: give a run cell folder or a checkpoint")
    inputs = [source, weights] + [Path(p) for p in (cell_mask, config.mask) if p]
    check_out_path(out, inputs, config.overwrite)
    name, kwargs = _model_settings(config, source)
    model = create_model(name, _num_classes(weights, name, kwargs), **kwargs)
    load_weights(model, str(weights))
    mask = _choose_mask(config, model, weights, cell_mask)
    mask.apply(model)
    export_pruned(model, mask, out, name, kwargs)
    back = read_exported(out).state_dict
    if any(not torch.equal(back[k], v) for k, v in model.state_dict().items()):
        raise PrunekitError(f"internal error: {out} does not read back as the masked model")
    size, dense = out.stat().st_size, dense_size_bytes(model)
    return {
        "out": str(out),
        "model": name,
        "weights": str(weights),
        "sparsity": mask.sparsity,
        "bytes": size,
        "dense_bytes": dense,
        "dense_over_export": round(dense / size, 2),
        "source_bytes": weights.stat().st_size,
    }


COMMAND = {
    "name": "export",
    "help": "write a pruned model as a compact safetensors file (kept weights + positions)",
    "description": "Export a run cell folder or a checkpoint: only the kept weights of "
    "masked parameters and their positions (bitmask or indices, whichever is smaller), "
    "dense tensors for the rest, and the model name/options/num_classes, so that "
    "`prunekit eval --checkpoint OUT` and prunekit.deploy.load_exported rebuild it. "
    "Reading the file never unpickles. No ONNX export.",
    "config_class": ExportConfig,
    "run": run_export,
}
