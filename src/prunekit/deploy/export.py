"""A pruned model in a compact, safe file: only the kept weights and where they are.

The file is `safetensors <https://github.com/huggingface/safetensors>`_ (a JSON header
and raw tensor bytes: reading it never unpickles). For a masked parameter ``p``:

- ``kept.p``: the kept values in row-major order (the parameter's dtype);
- ``bitmask.p`` (uint8, one bit per weight, ``numpy.packbits`` order, True = kept) or
  ``index.p`` (flat row-major indices of the kept weights, increasing, in the smallest
  signed integer type that holds them), whichever takes fewer bytes.

Every other state-dict entry (unpruned parameters, buffers) is stored whole as
``dense.<name>``. The header's metadata holds ``format`` (``prunekit-sparse``),
``format_version``, ``model``, ``model_kwargs`` (JSON), ``num_classes`` and ``layout``
(JSON: shape, position encoding and kept count of each masked parameter), so the file
alone rebuilds the model and its mask. The rebuilt model is the *masked* model: its
removed weights are exactly zero, and its outputs equal those of the dense masked
model bit for bit.

>>> export_pruned(model, mask, "mlpnet.safetensors", "mlpnet")  # doctest: +SKIP
>>> model = load_exported("mlpnet.safetensors")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes
from torch import Tensor, nn

from prunekit.errors import CheckpointError, ConfigError
from prunekit.masks import Mask
from prunekit.models import create_model

FORMAT = "prunekit-sparse"
FORMAT_VERSION = 1
_HEADER_LIMIT = 100_000_000  # safetensors' own bound on the JSON header


@dataclass(frozen=True)
class ExportedModel:
    """What :func:`read_exported` found: state dict (removed weights zero), mask, metadata."""

    model_name: str
    model_kwargs: dict
    num_classes: int
    state_dict: dict[str, Tensor]
    mask: Mask


# encoding -------------------------------------------------------------------------


def _index_dtype(numel: int) -> torch.dtype:
    for dtype in (torch.int16, torch.int32):
        if numel - 1 <= torch.iinfo(dtype).max:
            return dtype
    return torch.int64


def encode_positions(keep: Tensor) -> tuple[str, Tensor]:
    """``("bitmask", uint8 bits)`` or ``("index", flat indices)``, whichever is smaller."""
    flat = keep.detach().reshape(-1).cpu().to(torch.bool)
    dtype = _index_dtype(flat.numel())
    index_bytes = int(flat.sum()) * torch.empty((), dtype=dtype).element_size()
    if index_bytes < math.ceil(flat.numel() / 8):
        return "index", flat.nonzero().reshape(-1).to(dtype)
    return "bitmask", torch.from_numpy(np.packbits(flat.numpy()))


def decode_positions(encoding: str, data: Tensor, shape: tuple[int, ...], name: str) -> Tensor:
    """Inverse of :func:`encode_positions`: the bool keep tensor of ``shape``."""
    numel = math.prod(shape)
    if encoding == "bitmask":
        if data.dtype != torch.uint8 or data.numel() != math.ceil(numel / 8):
            raise CheckpointError(f"bitmask of {name} has the wrong size or type: corrupt file")
        bits = np.unpackbits(data.numpy(), count=numel).astype(bool)
        return torch.from_numpy(bits).reshape(shape)
    if encoding == "index":
        index = data.to(torch.int64)
        if index.numel() and (
            int(index.min()) < 0 or int(index.max()) >= numel or bool((index.diff() <= 0).any())
        ):
            raise CheckpointError(f"indices of {name} are out of range or unsorted: corrupt file")
        keep = torch.zeros(numel, dtype=torch.bool)
        keep[index] = True
        return keep.reshape(shape)
    raise CheckpointError(f"unknown position encoding {encoding!r} for {name}: corrupt file")


# writing ---------------------------------------------------------------------------


def export_tensors(model: nn.Module, mask: Mask) -> tuple[dict[str, Tensor], dict]:
    """The tensors and the layout of an export of ``model`` under ``mask``."""
    mask.check_compatible(model)
    tensors: dict[str, Tensor] = {}
    layout: dict[str, dict] = {}
    for name, value in model.state_dict().items():
        value = value.detach().cpu()
        if name not in mask:
            tensors[f"dense.{name}"] = value.contiguous().clone()
            continue
        keep = mask[name].cpu()
        encoding, positions = encode_positions(keep)
        tensors[f"kept.{name}"] = value[keep].contiguous()
        tensors[f"{encoding}.{name}"] = positions
        layout[name] = {
            "shape": list(value.shape),
            "positions": encoding,
            "kept": int(keep.sum()),
        }
    return tensors, layout


def export_pruned(
    model: nn.Module,
    mask: Mask,
    path: str | Path,
    model_name: str,
    model_kwargs: Mapping[str, object] | None = None,
    num_classes: int | None = None,
) -> Path:
    """Write ``model`` under ``mask`` to ``path`` (see the module docstring); returns it.

    ``model_name`` and ``model_kwargs`` must rebuild the architecture with
    ``prunekit.models.create_model``; ``num_classes`` defaults to the width of the
    model's last Linear layer. The file is written atomically.
    """
    kwargs = dict(model_kwargs or {})
    if num_classes is None:
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ConfigError("give num_classes: the model has no Linear layer to read it from")
        num_classes = linears[-1].out_features
    tensors, layout = export_tensors(model, mask)
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "model": model_name,
        "model_kwargs": json.dumps(kwargs, sort_keys=True),
        "num_classes": str(num_classes),
        "layout": json.dumps(layout),
        "sparsity": repr(mask.sparsity),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(safetensors_bytes(tensors, metadata=metadata))
    partial.replace(path)
    return path


def dense_size_bytes(model: nn.Module) -> int:
    """Bytes of the model's whole state dict as a safetensors file (the dense baseline)."""
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    return len(safetensors_bytes(state))


# reading ---------------------------------------------------------------------------


def safetensors_metadata(path: str | Path) -> dict[str, str] | None:
    """The ``__metadata__`` of a safetensors file, ``{}`` if it has none; None if ``path``
    is not a safetensors file. Reads only the header."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                return None
            (length,) = struct.unpack("<Q", head)
            if not 2 <= length <= min(_HEADER_LIMIT, path.stat().st_size - 8):
                return None
            header = json.loads(handle.read(length))
    except (OSError, ValueError):
        return None
    if not isinstance(header, dict):
        return None
    metadata = header.get("__metadata__") or {}
    return metadata if isinstance(metadata, dict) else None


def is_exported(path: str | Path) -> bool:
    """True when ``path`` is a safetensors file written by :func:`export_pruned`."""
    metadata = safetensors_metadata(path)
    return bool(metadata) and metadata.get("format") == FORMAT


def _metadata_fields(path: Path, metadata: dict[str, str]) -> tuple[str, dict, int, dict]:
    try:
        version = int(metadata["format_version"])
        name = metadata["model"]
        kwargs = json.loads(metadata["model_kwargs"])
        num_classes = int(metadata["num_classes"])
        layout = json.loads(metadata["layout"])
    except (KeyError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: the export's metadata is incomplete or corrupt ({type(exc).__name__}: "
            f"{exc}); export the model again"
        ) from None
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} is export format {version}, newer than this prunekit reads "
            f"({FORMAT_VERSION}); upgrade prunekit"
        )
    if not isinstance(kwargs, dict) or not isinstance(layout, dict):
        raise CheckpointError(f"{path}: model_kwargs and layout must be JSON objects")
    return name, kwargs, num_classes, layout


def _read_tensors(path: Path) -> dict[str, Tensor]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            return {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except Exception as exc:  # untrusted bytes: any failure means a bad file
        raise CheckpointError(
            f"{path} is a corrupt or truncated safetensors file ({type(exc).__name__}: "
            f"{str(exc)[:160]}); export the model again"
        ) from None


_MAX_NUMEL = 2**40  # no real layer comes near: a larger stored shape is corruption


def _layout_shape(path: Path, name: str, entry: object) -> tuple[int, ...]:
    """The stored shape of ``name``: non-negative integers of a sane total, else
    :class:`CheckpointError`."""
    shape = entry.get("shape", ()) if isinstance(entry, dict) else None
    if not isinstance(shape, list) or not all(
        isinstance(s, int) and not isinstance(s, bool) for s in shape
    ):
        raise CheckpointError(f"{path}: the layout of {name} has no valid shape: corrupt file")
    if any(s < 0 for s in shape) or math.prod(shape) > _MAX_NUMEL:
        raise CheckpointError(
            f"{path}: {name} has the impossible shape {tuple(shape)} (negative or huge "
            "sizes): corrupt or edited file; export the model again"
        )
    return tuple(shape)


def _rebuild(path: Path, tensors: dict[str, Tensor], layout: dict) -> tuple[dict, Mask]:
    state: dict[str, Tensor] = {}
    mask = Mask()
    for key, value in tensors.items():
        kind, _, name = key.partition(".")
        if kind == "dense":
            state[name] = value
        elif kind not in ("kept", "bitmask", "index") or name not in layout:
            raise CheckpointError(f"{path}: unexpected tensor {key!r} in the export")
    for name, entry in layout.items():
        shape = _layout_shape(path, name, entry)
        encoding = entry.get("positions")
        values, positions = tensors.get(f"kept.{name}"), tensors.get(f"{encoding}.{name}")
        if values is None or positions is None:
            raise CheckpointError(f"{path}: the kept values or positions of {name} are missing")
        keep = decode_positions(encoding, positions, shape, name)
        if int(keep.sum()) != values.numel() or values.dim() != 1:
            raise CheckpointError(
                f"{path}: {name} has {values.numel()} kept values for {int(keep.sum())} "
                "positions: corrupt file"
            )
        weight = torch.zeros(shape, dtype=values.dtype)
        weight[keep] = values
        state[name], mask[name] = weight, keep
    return state, mask


def read_exported(path: str | Path) -> ExportedModel:
    """The contents of a file written by :func:`export_pruned` (nothing is unpickled).

    Missing, truncated or corrupt files and other safetensors files raise
    :class:`CheckpointError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"exported model {path} does not exist or is not a file")
    metadata = safetensors_metadata(path)
    if metadata is None:
        raise CheckpointError(
            f"{path} is not a safetensors file (bad header); give a file written by "
            "`prunekit export`"
        )
    if metadata.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is a safetensors file but not a prunekit export (format "
            f"{metadata.get('format')!r}); write one with `prunekit export`"
        )
    name, kwargs, num_classes, layout = _metadata_fields(path, metadata)
    state, mask = _rebuild(path, _read_tensors(path), layout)
    return ExportedModel(name, kwargs, num_classes, state, mask)


def load_exported(path: str | Path) -> nn.Module:
    """Rebuild the model of an export: ``create_model`` with the stored weights.

    The model is in eval mode; removed weights are exactly zero (the mask is
    ``read_exported(path).mask``). A file that does not fit the architecture it names
    raises :class:`CheckpointError`.
    """
    exported = read_exported(path)
    model = create_model(exported.model_name, exported.num_classes, **exported.model_kwargs)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(exported.state_dict))
    unexpected = sorted(set(exported.state_dict) - set(expected))
    wrong = [
        k
        for k in expected
        if k in exported.state_dict
        and tuple(expected[k].shape) != tuple(exported.state_dict[k].shape)
    ]
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{path} does not fit {exported.model_name}: missing {missing[:4]}, unexpected "
            f"{unexpected[:4]}, wrong shapes {wrong[:4]}; the file is corrupt or edited"
        )
    not_float = [
        f"{k} ({exported.state_dict[k].dtype})"
        for k, v in expected.items()
        if v.is_floating_point() and not exported.state_dict[k].is_floating_point()
    ]
    if not_float:
        raise CheckpointError(
            f"{path}: values of {exported.model_name} are not floating-point: "
            f"{', '.join(not_float[:4])}; the file is corrupt or edited, export the model again"
        )
    model.load_state_dict(exported.state_dict)
    return model.eval()
