"""Sparsity reports: kept / removed / density per layer and in total."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from torch import nn

from prunekit.masks.mask import Mask
from prunekit.utils.files import atomic_write_text


@dataclass
class LayerSparsity:
    name: str
    shape: list[int]
    total: int
    kept: int

    @property
    def removed(self) -> int:
        return self.total - self.kept

    @property
    def density(self) -> float:
        return self.kept / self.total if self.total else 1.0

    @property
    def collapsed(self) -> bool:
        """True when the layer keeps no weight at all: the network cannot pass signal."""
        return self.kept == 0 and self.total > 0


@dataclass
class SparsityReport:
    """Per-layer and total counts. ``prunable_*`` cover masked weights only,
    ``model_*`` every parameter of the model (biases, norms, dense layers included)."""

    layers: list[LayerSparsity]
    model_total: int
    prunable_total: int = field(init=False)
    prunable_kept: int = field(init=False)

    def __post_init__(self) -> None:
        self.prunable_total = sum(layer.total for layer in self.layers)
        self.prunable_kept = sum(layer.kept for layer in self.layers)

    @property
    def prunable_removed(self) -> int:
        return self.prunable_total - self.prunable_kept

    @property
    def sparsity(self) -> float:
        """Fraction of prunable weights removed."""
        return self.prunable_removed / self.prunable_total if self.prunable_total else 0.0

    @property
    def model_kept(self) -> int:
        return self.model_total - self.prunable_removed

    @property
    def model_sparsity(self) -> float:
        return self.prunable_removed / self.model_total if self.model_total else 0.0

    @property
    def collapsed_layers(self) -> list[str]:
        return [layer.name for layer in self.layers if layer.collapsed]

    def to_dict(self) -> dict:
        layers = []
        for layer in self.layers:
            entry = asdict(layer)
            entry.update(removed=layer.removed, density=layer.density, collapsed=layer.collapsed)
            layers.append(entry)
        return {
            "layers": layers,
            "prunable": {
                "total": self.prunable_total,
                "kept": self.prunable_kept,
                "removed": self.prunable_removed,
                "density": 1.0 - self.sparsity,
                "sparsity": self.sparsity,
            },
            "model": {
                "total": self.model_total,
                "kept": self.model_kept,
                "removed": self.prunable_removed,
                "density": 1.0 - self.model_sparsity,
                "sparsity": self.model_sparsity,
            },
            "collapsed_layers": self.collapsed_layers,
        }

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2))

    def to_table(self) -> str:
        """A fixed-width text table, one row per layer, then the totals."""
        width = max([len(layer.name) for layer in self.layers] + [len("all prunable")])
        header = f"{'layer':<{width}}  {'shape':>18}  {'kept':>10}  {'removed':>10}  density"
        lines = [header, "-" * len(header)]
        for layer in self.layers:
            flag = "  COLLAPSED" if layer.collapsed else ""
            shape = "x".join(map(str, layer.shape))
            lines.append(
                f"{layer.name:<{width}}  {shape:>18}  {layer.kept:>10}  "
                f"{layer.removed:>10}  {layer.density:7.4f}{flag}"
            )
        lines.append("-" * len(header))
        lines.append(
            f"{'all prunable':<{width}}  {'':>18}  {self.prunable_kept:>10}  "
            f"{self.prunable_removed:>10}  {1 - self.sparsity:7.4f}"
        )
        lines.append(
            f"{'whole model':<{width}}  {'':>18}  {self.model_kept:>10}  "
            f"{self.prunable_removed:>10}  {1 - self.model_sparsity:7.4f}"
        )
        return "\n".join(lines)


def sparsity_report(mask: Mask, model: nn.Module | None = None) -> SparsityReport:
    """Report of ``mask``; with ``model``, whole-model totals count all its parameters."""
    layers = [
        LayerSparsity(name=n, shape=list(m.shape), total=m.numel(), kept=int(m.sum()))
        for n, m in mask.items()
    ]
    if model is not None:
        mask.check_compatible(model)
        model_total = sum(p.numel() for p in model.parameters())
    else:
        model_total = sum(layer.total for layer in layers)
    return SparsityReport(layers=layers, model_total=model_total)
