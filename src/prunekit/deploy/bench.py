"""Measuring dense against sparse inference on the CPU (``prunekit bench``).

Every comparison is made in one run: the dense and the sparse call alternate (so that
drift from other processes hits both alike), after ``warmup`` untimed calls of each,
and the median of ``repeats`` wall-clock times is kept. Masks come from global
magnitude on a seeded random initialisation: for timing only the positions of the
zeros matter, not what the weights learned.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from prunekit.deploy.sparse import SparseConv2d, SparseLinear, sparse_layers, sparsify_for_inference
from prunekit.deploy.timing import median_times
from prunekit.masks import Mask, prunable_parameters
from prunekit.models import create_model, input_shape_for

# Layers timed for the crossover: LeNet-300-100's first layer and a VGG-19 stage-3 conv.
CROSSOVER_LAYERS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "Linear": (lambda: nn.Linear(784, 300), (784,)),
    "Conv2d": (lambda: nn.Conv2d(256, 256, 3, padding=1), (256, 8, 8)),
}
CROSSOVER_DENSITIES = (0.5, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01)


def compare(
    dense: nn.Module, sparse: nn.Module | None, x: Tensor, repeats: int = 5, warmup: int = 2
) -> tuple[float, float]:
    """Median seconds of ``dense(x)`` and ``sparse(x)`` (``timing.median_times``).

    With ``sparse=None`` only ``dense`` is timed and its time is returned twice.
    """
    modules = [dense] if sparse is None else [dense, sparse]
    medians = median_times([lambda m=m: m(x) for m in modules], repeats, warmup)
    return medians[0], medians[-1]


def magnitude_masks(model: nn.Module, sparsities: Sequence[float]) -> dict[float, Mask]:
    """Global magnitude masks of ``model`` at each sparsity (one sort for all)."""
    params = prunable_parameters(model)
    flat = torch.cat([p.detach().abs().reshape(-1) for p in params.values()])
    order = torch.argsort(flat)
    masks = {}
    for sparsity in sparsities:
        keep = torch.ones(flat.numel(), dtype=torch.bool)
        keep[order[: int(round(sparsity * flat.numel()))]] = False
        masks[sparsity] = Mask.from_flat(keep, params)
    return masks


def _sparse_module(dense: nn.Module) -> nn.Module:
    return SparseLinear(dense) if isinstance(dense, nn.Linear) else SparseConv2d(dense)


@torch.no_grad()
def measure_crossover(
    layer_type: str,
    batch_size: int,
    densities: Sequence[float] = CROSSOVER_DENSITIES,
    repeats: int = 5,
    warmup: int = 2,
    seed: int = 0,
) -> dict:
    """Time one representative layer dense and sparse at increasing densities.

    The sweep stops after two densities in a row where sparse was not faster. The
    crossover is the highest density at which sparse won (0 when it never won); a
    layer made sparse wrongly by a noisy crossover is caught by the per-layer timing of
    :func:`sparsify_for_inference`. Returns the timings and the crossover.
    """
    build, shape = CROSSOVER_LAYERS[layer_type]
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    layer = build().eval()
    x = torch.randn(batch_size, *shape, generator=generator)
    points: list[dict] = []
    for d in sorted(densities):
        if len(points) >= 2 and all(p["sparse_s"] >= p["dense_s"] for p in points[-2:]):
            break  # sparse lost twice in a row: denser layers are not timed
        dense = build().eval()
        with torch.no_grad():
            keep = torch.rand(layer.weight.shape, generator=generator) < d
            dense.weight.copy_(layer.weight * keep)
        sparse = _sparse_module(dense)
        dense_s, sparse_s = compare(dense, sparse, x, repeats, warmup)
        points.append({"density": d, "dense_s": dense_s, "sparse_s": sparse_s})
    won = [p["density"] for p in points if p["sparse_s"] < p["dense_s"]]
    crossover = max(won, default=0.0)
    return {"layer": layer_type, "batch_size": batch_size, "points": points, "crossover": crossover}


@dataclass(frozen=True)
class ModelTiming:
    model: str
    sparsity: float
    batch_size: int
    dense_s: float
    sparse_s: float
    sparse_layers: list[str]

    @property
    def speedup(self) -> float:
        return self.dense_s / self.sparse_s


@torch.no_grad()
def measure_model(
    name: str,
    sparsities: Sequence[float],
    batch_sizes: Sequence[int],
    crossover: Mapping[int, Mapping[str, float]],
    repeats: int = 5,
    warmup: int = 2,
    seed: int = 0,
) -> list[ModelTiming]:
    """Dense masked model against ``sparsify_for_inference`` at each sparsity and batch.

    ``crossover[batch_size]`` gives the densities by layer type; layers below them are
    also timed on their own input and stay dense where sparse is not faster. When no
    layer is sparse the sparse model is the dense one and its time is the dense time.
    """
    torch.manual_seed(seed)
    base = create_model(name, num_classes=10).eval()
    masks = magnitude_masks(base, sparsities)
    shape = input_shape_for(base)
    results = []
    for sparsity in sparsities:
        dense = create_model(name, num_classes=10).eval()
        dense.load_state_dict(base.state_dict())
        masks[sparsity].apply(dense)
        for batch in batch_sizes:
            x = torch.randn(batch, *shape)
            sparse = sparsify_for_inference(
                dense, crossover[batch], example_input=x, repeats=max(3, repeats // 2)
            )
            layers = sparse_layers(sparse)
            dense_s, sparse_s = compare(dense, sparse if layers else None, x, repeats, warmup)
            results.append(ModelTiming(name, sparsity, batch, dense_s, sparse_s, layers))
    return results
