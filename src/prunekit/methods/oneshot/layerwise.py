"""Layer-wise one-shot pruning: each Linear/Conv2d layer is pruned against its own
reconstruction error ‖(W − Ŵ)X‖² on calibration inputs, H = 2XXᵀ/N (d_in × d_in per
block), never an m × d matrix of gradients. Models of any size: memory is one layer's
Hessians and one batch of its inputs at a time.

Methods (registered with :func:`register_layerwise`, each its own weight update):

| name | solver (``second_order.layerwise``) |
|---|---|
| ``lw_magnitude`` | ``magnitude_layer``: the layer's smallest |w|, no update (the baseline) |
| ``obc`` | ``obc_layer``: exact greedy OBS per row (ExactOBS) |
| ``sparsegpt`` | ``sparsegpt_layer``: one Cholesky factor, lazy column blocks |
| ``lw_l0`` | ``joint_layer``: joint support and weights (IHT, exact backsolve) |

**Sequential calibration.** Layers are pruned in forward order (the order of their
first call). Layer ℓ's H is accumulated, batch by batch, from the inputs layer ℓ gets
when the calibration inputs run through the network whose layers before ℓ are already
pruned and updated. Layer ℓ is then pruned and its new weights written before layer
ℓ+1 is calibrated. Where the forward can be traced, each batch is carried through it
once over the whole pass, resuming after each pruned layer (``ForwardCache``: every
layer runs once per batch, the values alive at the current layer are held for all
calibration samples); otherwise the forward is rerun from the input for each layer and
stops right after it. Both give bit-identical results.

**Allocation** (how many weights each layer loses; exactly round(s·d) in total):

- ``uniform``: every layer at s (counts floor or ceil of s·d_ℓ, summing exactly);
- ``global``: a first pass on the *dense* network computes every layer's H (one layer
  at a time) and its normalised OBS saliency (``layer_saliency``); the round(s·d)
  lowest saliencies over all layers give each layer's count. The sequential pass then
  prunes each layer to that count (only the counts are taken from the first pass).
  Every layer keeps at least ``min_layer_density``·(1 − s) of its weights (default
  0.5, chosen on validation: reproductions/results/layerwise_floor_sweep.md), so a
  wide layer of individually small saliencies is never removed whole;
- explicit: a mapping parameter name → sparsity (``layer_sparsities`` in YAML);
  layers it does not name are pruned at ``sparsity``.

A Conv2d of g groups is g blocks (each its own H), a layer's count split over them in
proportion to their size. With an N:M ``pattern`` every patternable layer keeps N of
every M inputs of each row (the others stay dense). Weights removed earlier
(``fixed_removed``) stay removed and count towards the target.
"""

from __future__ import annotations

import copy
import heapq
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from prunekit.errors import ConfigError, PrunekitError
from prunekit.masks import Mask, count_to_remove, nm_patterned, parse_pattern
from prunekit.masks.ranking import layerwise_counts
from prunekit.methods.oneshot.calibration import (
    ForwardCache,
    ForwardPlan,
    PrunedLayer,
    accumulate_inputs,
    forward_plan,
    peak_bytes,
    pruned_layer,
    recalibrate_batchnorm,
)
from prunekit.methods.oneshot.prune import check_parameter_names
from prunekit.methods.oneshot.registry import get_method, register_layerwise
from prunekit.methods.oneshot.results import OneShotRecord, OneShotResult
from prunekit.second_order.fisher import (
    DEFAULT_MEMORY_FRACTION,
    available_memory_bytes,
    check_memory,
)
from prunekit.second_order.layerwise import (
    HessianAccumulator,
    LayerPruneResult,
    damped_inverse,
    joint_layer,
    joint_workspace_bytes,
    layer_error,
    layer_saliency,
    least_squares_on_support,
    magnitude_layer,
    obc_layer,
    obc_workspace_bytes,
    prepare_hessian,
    sparsegpt_layer,
)
from prunekit.utils.settings import setting

ALLOCATIONS = ("uniform", "global")


@dataclass
class LayerwiseSettings:
    """Settings of the layer-wise methods (``sparsegpt``, ``obc``, ``lw_l0``,
    ``lw_magnitude``): the calibration sample, the Hessian's dampening, the allocation
    across layers and the memory limit."""

    calibration_samples: int = setting(
        1024,
        "training samples whose inputs calibrate every layer's Hessian (seeded draw; more "
        "than there are is an error)",
    )
    batch_size: int = setting(128, "calibration samples per forward pass")
    damp: float = setting(0.01, "Hessian dampening: this fraction of mean(diag H) added to H")
    block_size: int = setting(128, "sparsegpt: columns per lazy-update block")
    allocation: str = setting(
        "uniform",
        "per-layer counts: uniform (every layer at the target) or global (normalised OBS "
        "saliencies ranked over all layers, computed on the dense network)",
        choices=list(ALLOCATIONS),
    )
    min_layer_density: float = setting(
        0.5,
        "global allocation: every layer keeps at least this fraction of the target's "
        "density, i.e. its sparsity is at most 1 − this·(1 − s) (0: no floor; a layer "
        "may then be removed whole)",
    )
    layer_sparsities: dict = setting(
        {},
        "explicit per-layer targets, parameter name → sparsity, e.g. '{fc1.weight: 0.8}' "
        "(overrides allocation; layers not named get the target sparsity)",
    )
    bn_recalibration: bool = setting(
        False, "re-estimate BatchNorm statistics on the calibration inputs after pruning"
    )
    memory_limit_gb: float | None = setting(
        None, "refuse a layer whose Hessians and inputs need more (GiB; default: 80% of free)"
    )
    dtype: str = setting(
        "float32", "dtype the Hessians are accumulated in", choices=["float32", "float64"]
    )
    l0_iterations: int = setting(100, "lw_l0: IHT steps tried at most per layer block")
    l0_swap_rounds: int = setting(100, "lw_l0: rounds of exact per-row swaps (0: none)")
    l0_start: str = setting(
        "sparsegpt", "lw_l0: the start mask", choices=["sparsegpt", "obc", "magnitude"]
    )

    def __post_init__(self) -> None:
        for name in ("calibration_samples", "batch_size", "block_size", "l0_iterations"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"layerwise {name} must be an integer >= 1, got {value!r}")
        if not (isinstance(self.damp, int | float) and 0 <= self.damp < float("inf")):
            raise ConfigError(f"layerwise damp must be a number >= 0, got {self.damp!r}")
        if not isinstance(self.l0_swap_rounds, int) or self.l0_swap_rounds < 0:
            raise ConfigError(f"layerwise l0_swap_rounds must be >= 0, got {self.l0_swap_rounds!r}")
        if self.allocation not in ALLOCATIONS:
            raise ConfigError(
                f"layerwise allocation must be one of {', '.join(ALLOCATIONS)}, got "
                f"{self.allocation!r} (explicit targets go in layer_sparsities)"
            )
        if not (
            isinstance(self.min_layer_density, int | float) and 0 <= self.min_layer_density <= 1
        ):
            raise ConfigError(
                f"layerwise min_layer_density must be in [0, 1], got {self.min_layer_density!r}"
            )
        if self.dtype not in ("float32", "float64"):
            raise ConfigError(f"layerwise dtype must be float32 or float64, got {self.dtype!r}")
        if self.memory_limit_gb is not None and not self.memory_limit_gb > 0:
            raise ConfigError(f"memory_limit_gb must be > 0, got {self.memory_limit_gb}")

    @property
    def torch_dtype(self) -> torch.dtype:
        return torch.float64 if self.dtype == "float64" else torch.float32


@dataclass(frozen=True)
class BlockTask:
    """One block to prune: its weights (rows × d_in), its H, how many to remove, the
    N:M pattern and the weights that must stay removed (bool, or None)."""

    weights: Tensor
    hessian: Tensor
    count: int
    pattern: tuple[int, int] | None
    fixed: Tensor | None


def _lw_magnitude(task: BlockTask, settings: LayerwiseSettings) -> LayerPruneResult:
    return magnitude_layer(task.weights, task.hessian, task.count, pattern=task.pattern)


def _obc(task: BlockTask, settings: LayerwiseSettings) -> LayerPruneResult:
    return obc_layer(
        task.weights, task.hessian, task.count, damp=settings.damp, pattern=task.pattern
    )


def _sparsegpt(task: BlockTask, settings: LayerwiseSettings) -> LayerPruneResult:
    return sparsegpt_layer(
        task.weights,
        task.hessian,
        task.count,
        damp=settings.damp,
        block_size=settings.block_size,
        pattern=task.pattern,
    )


def _joint(task: BlockTask, settings: LayerwiseSettings) -> LayerPruneResult:
    return joint_layer(
        task.weights,
        task.hessian,
        task.count,
        damp=settings.damp,
        iterations=settings.l0_iterations,
        swap_rounds=settings.l0_swap_rounds,
        start=settings.l0_start,
        block_size=settings.block_size,
        pattern=task.pattern,
    )


register_layerwise(
    "lw_magnitude",
    _lw_magnitude,
    settings=LayerwiseSettings,
    updates=False,
    summary="layer-wise baseline: each layer's smallest |w| (no update), same allocation",
)
register_layerwise(
    "obc",
    _obc,
    settings=LayerwiseSettings,
    summary="OBC / ExactOBS: greedy OBS removals per row on the layer's Hessian",
    workspace=obc_workspace_bytes,
)
register_layerwise(
    "sparsegpt",
    _sparsegpt,
    settings=LayerwiseSettings,
    summary="SparseGPT: column sweep with one Cholesky factor of H⁻¹, lazy blocks",
)
register_layerwise(
    "lw_l0",
    _joint,
    settings=LayerwiseSettings,
    summary="joint per-row support and weights on the layer's Hessian (IHT, backsolve)",
    workspace=joint_workspace_bytes,
)


@dataclass
class LayerReport:
    """One pruned layer: its weights removed of its size, the reconstruction error
    ‖(W − Ŵ)X‖²/N on its calibration inputs and that error over ‖WX‖²/N, the input
    rows N its H saw, and the seconds of calibration and of the solver."""

    name: str
    removed: int
    size: int
    blocks: int
    error: float
    relative_error: float | None
    calibration_rows: int
    calibration_seconds: float
    solve_seconds: float


@dataclass
class LayerwiseRecord(OneShotRecord):
    """The record of a layer-wise method (``result.json``): the one-shot fields plus
    the allocation, the calibration sample, the estimated peak memory (and its layer),
    whether BatchNorm statistics were re-estimated, and every layer's report.
    ``calibration_cache_bytes``: the most the carried forward held for all calibration
    samples at once (0 where each layer's forward was recomputed), on top of the peak."""

    allocation: str = "uniform"
    calibration_samples: int = 0
    calibration_seconds: float = 0.0
    reconstruction_error: float = 0.0
    peak_memory_bytes: int = 0
    peak_memory_layer: str = ""
    calibration_cache_bytes: int = 0
    bn_recalibrated: bool = False
    layers: list[LayerReport] = field(default_factory=list)


@dataclass
class LayerwiseResult(OneShotResult):
    """A :class:`OneShotResult` whose ``buffers`` hold re-estimated BatchNorm
    statistics by name (empty unless ``bn_recalibration``)."""

    buffers: dict[str, Tensor] = field(default_factory=dict)


def copy_buffers(model: nn.Module, result: OneShotResult) -> None:
    """Write a layer-wise result's re-estimated BatchNorm buffers into ``model`` (a
    no-op for any other result)."""
    buffers = getattr(result, "buffers", None) or {}
    with torch.no_grad():
        for name, value in buffers.items():
            model.get_buffer(name).copy_(value)


def calibration_inputs(data, samples: int, seed: int, *, explicit: bool = True) -> Tensor:
    """The calibration inputs: a Tensor is taken as it is (all its rows); training data
    (``(x, y)``, a Dataset or DataLoader) gives a seeded draw of ``samples`` inputs
    (all of them when fewer and ``explicit`` is False)."""
    if isinstance(data, Tensor):
        return data
    # evidence.py reads this module (its dispatch): import its data helpers on use
    from prunekit.methods.oneshot.evidence import as_dataset, sample_order, stack_samples, take

    dataset = as_dataset(data)
    order = sample_order(dataset, seed)
    count = samples if explicit else min(samples, len(order))
    x, _ = stack_samples(
        dataset, take(order, count, "layer-wise calibration", "calibration_samples")
    )
    return x


def prune_layerwise(
    model: nn.Module,
    names: Sequence[str],
    method: str,
    sparsity: float | None,
    calibration,
    *,
    settings: LayerwiseSettings | None = None,
    pattern: str | tuple[int, int] | None = None,
    allocation: str | Mapping[str, float] | None = None,
    fixed_removed: Tensor | None = None,
    seed: int = 0,
    calibration_cache: bool = True,
) -> LayerwiseResult:
    """Prune ``model``'s parameters ``names`` (Linear/Conv2d weights) layer by layer with
    the layer-wise ``method`` (``sparsegpt``, ``obc``, ``lw_l0``, ``lw_magnitude``);
    the model is not changed.

    ``calibration`` is a tensor of inputs (all used) or training data (``(x, y)``, a
    Dataset or a DataLoader: a ``seed``-ed draw of ``settings.calibration_samples``).
    ``sparsity`` is the fraction of the prunable weights removed: exactly round(s·d)
    with the ``uniform`` or ``global`` ``allocation``; a mapping name → sparsity gives
    explicit per-layer targets (default: ``settings.layer_sparsities`` when set, else
    ``settings.allocation``). ``pattern="2:4"`` asks for N:M instead (sparsity None or
    the pattern's). ``fixed_removed`` (flat bool, True = removed, in the order of
    ``names``) stay removed. Raises ResourceError, naming the layer, when a layer would
    need more than ``settings.memory_limit_gb``. ``calibration_cache`` False reruns the
    forward from the input for every layer instead of carrying it (same result, less
    memory, more time; the cache also gives way by itself when it would not fit).

    Example::

        result = prune_layerwise(net, ["fc1.weight", "fc2.weight"], "sparsegpt", 0.5, x)
        result.mask, result.weights, result.record.layers
    """
    settings = settings or LayerwiseSettings()
    spec = get_method(method)
    if not spec.layerwise:
        raise ConfigError(
            f"{spec.name!r} is not a layer-wise method; use prune_one_shot or prune_model"
        )
    names = list(names)
    check_parameter_names(model, names)
    layers = [pruned_layer(model, n) for n in names]
    sizes = [layer.size for layer in layers]
    d = sum(sizes)
    fixed = _split_fixed(fixed_removed, layers, d)
    nm = None if pattern is None else parse_pattern(pattern)
    if allocation is None:
        allocation = dict(settings.layer_sparsities) or settings.allocation
    if nm is not None and allocation not in (None, "uniform"):
        raise ConfigError("an N:M pattern fixes every layer's count: use the uniform allocation")
    if nm is None and sparsity is None and not isinstance(allocation, Mapping):
        raise ConfigError("give a sparsity, an N:M pattern or explicit per-layer targets")

    inputs = calibration_inputs(calibration, settings.calibration_samples, seed)
    if len(inputs) == 0:
        raise ConfigError("no calibration inputs given")
    device = next(iter(model.parameters())).device
    working = copy.deepcopy(model).eval()
    by_name = {layer.name: layer for layer in _layers_of(working, names)}

    batch_list = [
        inputs[start : start + settings.batch_size].to(device)
        for start in range(0, len(inputs), settings.batch_size)
    ]

    def batches():
        return iter(batch_list)

    plan = forward_plan(working, list(by_name.values()), batch_list[0])
    peak, peak_layer = _check_memory(plan, settings, device, spec.selection.workspace)
    caches: list[ForwardCache] = []

    def new_cache() -> ForwardCache | None:
        if not calibration_cache:
            return None
        limit = settings.memory_limit_gb
        limit = (
            int(limit * 2**30)
            if limit is not None
            else int(DEFAULT_MEMORY_FRACTION * available_memory_bytes(device))
        )
        cache = ForwardCache.build(working, plan, batch_list, max(0, limit - peak))
        if cache is not None:
            caches.append(cache)
        return cache

    started = time.perf_counter()
    if nm is not None:
        counts = _pattern_counts(plan.layers, nm, fixed)
        allocation_name = f"pattern {nm[0]}:{nm[1]}"
    elif isinstance(allocation, Mapping):
        counts = _explicit_counts(plan.layers, allocation, sparsity, fixed)
        allocation_name = "explicit"
    elif allocation == "uniform":
        counts = _uniform_counts(layers, sparsity, fixed)
        allocation_name = "uniform"
    elif allocation == "global":
        dense_cache = new_cache()
        counts = _global_counts(working, plan, batches, settings, sparsity, fixed, dense_cache)
        if dense_cache is not None:
            dense_cache.release()
        allocation_name = "global"
    else:
        raise ConfigError(
            f"allocation must be uniform, global or a mapping name → sparsity, got {allocation!r}"
        )
    calibration_seconds = time.perf_counter() - started

    solve = spec.selection.solver
    reports, kept = {}, {}
    cache = new_cache()
    for layer in plan.layers:
        reports[layer.name], kept[layer.name] = _prune_layer(
            working,
            layer,
            plan,
            batches,
            settings,
            counts[layer.name],
            nm,
            fixed,
            solve,
            spec.selection.updates,
            cache,
        )
    if cache is not None:
        cache.release()
    buffers = recalibrate_batchnorm(working, batches()) if settings.bn_recalibration else {}

    weights = {n: working.get_parameter(n).detach().clone() for n in names}
    mask = Mask({n: kept[n] for n in names})
    target = sum(sum(c) for c in counts.values())
    if sum(int((~keep).sum()) for keep in mask.values()) != target:
        raise PrunekitError("internal error: the layers' removals do not add up to the target")
    layer_reports = [reports[n] for n in names]
    record = LayerwiseRecord(
        selection=spec.name,
        update=spec.name if spec.selection.updates else "none",
        removed=target,
        prunable=d,
        selection_seconds=sum(r.solve_seconds for r in layer_reports),
        update_seconds=0.0,
        allocation=allocation_name,
        calibration_samples=len(inputs),
        calibration_seconds=calibration_seconds + sum(r.calibration_seconds for r in layer_reports),
        reconstruction_error=sum(r.error for r in layer_reports),
        peak_memory_bytes=peak,
        peak_memory_layer=peak_layer,
        calibration_cache_bytes=max((c.peak_bytes for c in caches), default=0),
        bn_recalibrated=bool(settings.bn_recalibration),
        layers=layer_reports,
    )
    return LayerwiseResult(mask=mask, weights=weights, record=record, buffers=buffers)


def _layers_of(model: nn.Module, names: Sequence[str]) -> list[PrunedLayer]:
    return [pruned_layer(model, n) for n in names]


def _split_fixed(
    fixed_removed: Tensor | None, layers: Sequence[PrunedLayer], d: int
) -> dict[str, Tensor]:
    """Per layer, the fixed removals as (groups, rows, d_in) bool; absent when none."""
    if fixed_removed is None:
        return {}
    if fixed_removed.shape != (d,) or fixed_removed.dtype != torch.bool:
        raise ConfigError(f"fixed_removed must be a bool vector of length {d}")
    out = {}
    for layer, part in zip(
        layers, fixed_removed.cpu().split([x.size for x in layers]), strict=True
    ):
        if bool(part.any()):
            out[layer.name] = part.reshape(layer.groups, layer.rows, layer.d_in)
    return out


def _check_memory(
    plan: ForwardPlan,
    settings: LayerwiseSettings,
    device: torch.device,
    workspace: Callable[[int, int], int] | None = None,
) -> tuple[int, str]:
    """The largest layer's estimated peak bytes (the solver's ``workspace`` for one
    block included) and its name; ResourceError when it exceeds the limit."""
    itemsize = torch.empty((), dtype=settings.torch_dtype).element_size()
    peaks = {
        layer.name: peak_bytes(
            layer, plan.rows_per_sample[layer.name], settings.batch_size, itemsize
        )
        + (workspace(layer.rows, layer.d_in) if workspace is not None else 0)
        for layer in plan.layers
    }
    name = max(peaks, key=peaks.get)
    layer = next(x for x in plan.layers if x.name == name)
    limit = None if settings.memory_limit_gb is None else int(settings.memory_limit_gb * 2**30)
    check_memory(
        peaks[name],
        limit,
        device,
        f"layer-wise pruning of {name} ({layer.groups} block(s) of d_in = {layer.d_in}, "
        f"{plan.rows_per_sample[name]} input rows per sample, batches of {settings.batch_size})",
        "lower the layerwise batch size or leave the layer out of the names",
    )
    return peaks[name], name


def _fixed_counts(layer: PrunedLayer, fixed: Mapping[str, Tensor]) -> list[int]:
    part = fixed.get(layer.name)
    if part is None:
        return [0] * layer.groups
    return [int(g.sum()) for g in part]


def with_floors(counts: list[int], floors: list[int], exact: list[float]) -> list[int]:
    """``counts`` raised to ``floors`` with the same total: the excess is taken back from
    the entries furthest above their exact share ``exact`` (ties: the later entry).
    ConfigError when the floors alone exceed the total."""
    total = sum(counts)
    if sum(floors) > total:
        raise ConfigError(
            f"{sum(floors)} weights are already removed, more than the {total} this target "
            "removes: give a higher sparsity"
        )
    out = [max(c, f) for c, f in zip(counts, floors, strict=True)]
    excess = sum(out) - total
    heap = [(-(out[i] - exact[i]), -i) for i in range(len(out)) if out[i] > floors[i]]
    heapq.heapify(heap)
    while excess > 0:
        _, neg = heapq.heappop(heap)
        i = -neg
        out[i] -= 1
        excess -= 1
        if out[i] > floors[i]:
            heapq.heappush(heap, (-(out[i] - exact[i]), -i))
    return out


def _split_layer(layer: PrunedLayer, count: int, floors: list[int]) -> list[int]:
    """A layer's count over its blocks, in proportion to their (equal) size."""
    sizes = layer.block_sizes
    exact = [count * s / layer.size for s in sizes]
    base = layerwise_counts(count / layer.size, sizes) if layer.size else [0] * len(sizes)
    if sum(base) != count:  # float rounding of count/size: fix by the remainders
        base = [int(e) for e in exact]
        for i in sorted(range(len(sizes)), key=lambda i: -(exact[i] - base[i]))[
            : count - sum(base)
        ]:
            base[i] += 1
    return with_floors(base, floors, exact)


def _uniform_counts(
    layers: Sequence[PrunedLayer], sparsity: float, fixed: Mapping[str, Tensor]
) -> dict[str, list[int]]:
    sizes = [layer.size for layer in layers]
    per_layer = layerwise_counts(sparsity, sizes)
    floors = [sum(_fixed_counts(layer, fixed)) for layer in layers]
    per_layer = with_floors(per_layer, floors, [sparsity * s for s in sizes])
    return {
        layer.name: _split_layer(layer, count, _fixed_counts(layer, fixed))
        for layer, count in zip(layers, per_layer, strict=True)
    }


def _explicit_counts(
    layers: Sequence[PrunedLayer],
    targets: Mapping[str, float],
    sparsity: float | None,
    fixed: Mapping[str, Tensor],
) -> dict[str, list[int]]:
    known = {layer.name for layer in layers}
    unknown = [n for n in targets if n not in known]
    if unknown:
        raise ConfigError(
            f"per-layer targets name {unknown[:4]}, which are not pruned; pruned: "
            f"{sorted(known)[:12]}"
        )
    counts = {}
    for layer in layers:
        target = targets.get(layer.name, sparsity)
        if target is None:
            raise ConfigError(f"no target for {layer.name}: name it or give a sparsity")
        count = count_to_remove(float(target), layer.size)
        floors = _fixed_counts(layer, fixed)
        if sum(floors) > count:
            raise ConfigError(
                f"{layer.name} already has {sum(floors)} weights removed, more than the "
                f"{count} its target {target} removes"
            )
        counts[layer.name] = _split_layer(layer, count, floors)
    return counts


def _pattern_counts(
    layers: Sequence[PrunedLayer], nm: tuple[int, int], fixed: Mapping[str, Tensor]
) -> dict[str, list[int]]:
    n, m = nm
    counts = {}
    for layer in layers:
        shape = tuple(layer.weight.shape)
        if nm_patterned(shape, m):
            part = fixed.get(layer.name)
            if part is not None and int(part.reshape(-1, m).sum(1).max()) > m - n:
                raise ConfigError(
                    f"{layer.name} has a group of {m} inputs with more than {m - n} weights "
                    f"already removed: it cannot carry the {n}:{m} pattern"
                )
            counts[layer.name] = [layer.rows * layer.d_in // m * (m - n)] * layer.groups
        else:
            if layer.name in fixed:
                raise ConfigError(
                    f"{layer.name} cannot carry the {n}:{m} pattern and stays dense, but "
                    "it has removed weights"
                )
            counts[layer.name] = [0] * layer.groups
    if not any(sum(c) for c in counts.values()):
        raise ConfigError(
            f"no pruned layer can carry the {n}:{m} pattern (no input dimension is a "
            f"multiple of {m}); choose another M"
        )
    return counts


def _hessians(
    model: nn.Module,
    layer: PrunedLayer,
    plan: ForwardPlan,
    batches: Callable,
    settings: LayerwiseSettings,
    cache: ForwardCache | None = None,
) -> list[HessianAccumulator]:
    device = layer.weight.device
    accumulators = [
        HessianAccumulator(layer.d_in, dtype=settings.torch_dtype, device=device)
        for _ in range(layer.groups)
    ]
    if cache is None or not cache.accumulate(layer, accumulators):
        accumulate_inputs(model, layer, batches(), accumulators, plan.calls[layer.name])
    return accumulators


def _global_counts(
    model: nn.Module,
    plan: ForwardPlan,
    batches: Callable,
    settings: LayerwiseSettings,
    sparsity: float,
    fixed: Mapping[str, Tensor],
    cache: ForwardCache | None = None,
) -> dict[str, list[int]]:
    """Per-block counts from the round(s·d) lowest normalised saliencies of the dense
    network, every layer's H computed on the dense inputs (one layer at a time)."""
    scores = []
    for layer in plan.layers:
        accumulators = _hessians(model, layer, plan, batches, settings, cache)
        blocks = layer.weight_blocks(layer.weight.detach())
        part = torch.stack(
            [
                layer_saliency(w, acc.hessian, settings.damp).to("cpu", torch.float64)
                for w, acc in zip(blocks, accumulators, strict=True)
            ]
        )
        if layer.name in fixed:
            part[fixed[layer.name]] = -torch.inf
        scores.append(part.reshape(-1))
        del accumulators
    flat = torch.cat(scores)
    k = count_to_remove(sparsity, flat.numel())
    fixed_total = sum(int(f.sum()) for f in fixed.values())
    if fixed_total > k:
        raise ConfigError(
            f"{fixed_total} weights are already removed, more than the {k} this sparsity "
            "removes: give a higher sparsity"
        )
    sizes = [layer.size for layer in plan.layers]
    least = 1 if settings.min_layer_density > 0 else 0
    floors = [
        min(size, max(least, math.floor(settings.min_layer_density * (1.0 - sparsity) * size)))
        for size in sizes
    ]
    caps = [size - floor for size, floor in zip(sizes, floors, strict=True)]
    removed = capped_lowest(flat, sizes, caps, k)
    counts, start = {}, 0
    for layer in plan.layers:
        part = removed[start : start + layer.size].reshape(layer.groups, -1)
        counts[layer.name] = [int(g.sum()) for g in part]
        start += layer.size
    return counts


def capped_lowest(scores: Tensor, sizes: Sequence[int], caps: Sequence[int], k: int) -> Tensor:
    """Removal mask (True = removed) of exactly ``k`` of the concatenated per-layer
    ``scores``: the lowest ones, with at most ``caps[ℓ]`` taken from layer ℓ (scores of
    −inf, weights that must go, are always taken: their count raises that layer's cap).
    The same as walking the global order and skipping a layer once it is full: only a
    layer's ``cap`` lowest can be taken, and the k lowest of those candidates are."""
    candidates, start = [], 0
    for size, cap in zip(sizes, caps, strict=True):
        part = scores[start : start + size]
        cap = max(cap, int(torch.isneginf(part).sum()))
        candidates.append(torch.sort(part, stable=True).indices[:cap] + start)
        start += size
    pool = torch.cat(candidates).sort().values  # ties broken by position, as unfloored
    if pool.numel() < k:
        raise ConfigError(
            f"the per-layer floor (min_layer_density) leaves {pool.numel()} removable "
            f"weights, fewer than the {k} to remove: lower min_layer_density"
        )
    chosen = pool[torch.sort(scores[pool], stable=True).indices[:k]]
    removed = torch.zeros(scores.numel(), dtype=torch.bool)
    removed[chosen] = True
    return removed


def _prune_layer(
    model: nn.Module,
    layer: PrunedLayer,
    plan: ForwardPlan,
    batches: Callable,
    settings: LayerwiseSettings,
    counts: list[int],
    nm: tuple[int, int] | None,
    fixed: Mapping[str, Tensor],
    solve: Callable,
    updates: bool,
    cache: ForwardCache | None = None,
) -> tuple[LayerReport, Tensor]:
    """Calibrate ``layer`` on the current (partly pruned) model, prune each of its blocks
    to its count, and write the new weights into the model."""
    weight = layer.weight
    if not any(counts):  # nothing to remove (a layer an N:M pattern leaves dense)
        keep = torch.ones(weight.shape, dtype=torch.bool)
        report = LayerReport(layer.name, 0, layer.size, layer.groups, 0.0, 0.0, 0, 0.0, 0.0)
        return report, keep
    started = time.perf_counter()
    accumulators = _hessians(model, layer, plan, batches, settings, cache)
    calibration_seconds = time.perf_counter() - started
    blocks = layer.weight_blocks(weight.detach())
    fixed_blocks = fixed.get(layer.name)
    patterned = nm is not None and any(counts)
    new_blocks, kept_blocks, error, energy = [], [], 0.0, 0.0
    started = time.perf_counter()
    for g, (w, accumulator) in enumerate(zip(blocks, accumulators, strict=True)):
        hessian = accumulator.hessian
        w = w.to(torch.float64 if settings.dtype == "float64" else torch.float32)
        block_fixed = None if fixed_blocks is None else fixed_blocks[g].to(w.device)
        if block_fixed is not None and not bool(block_fixed.any()):
            block_fixed = None
        task = BlockTask(w, hessian, counts[g], nm if patterned else None, block_fixed)
        result = solve(task, settings)
        if block_fixed is not None and bool((block_fixed & result.kept).any()):
            result = hold_fixed(task, result, settings.damp, updates)
        _check_block(layer, g, result, counts[g], block_fixed)
        new_blocks.append(result.weights.to(weight.dtype))
        kept_blocks.append(result.kept.cpu())
        error += float(result.error)
        w64 = w.to(torch.float64)
        energy += float(((w64 @ hessian.to(torch.float64)) * w64).sum()) / 2
    solve_seconds = time.perf_counter() - started
    with torch.no_grad():
        weight.copy_(torch.stack(new_blocks).reshape(weight.shape))
    report = LayerReport(
        name=layer.name,
        removed=sum(counts),
        size=layer.size,
        blocks=layer.groups,
        error=error,
        relative_error=error / energy if energy > 0 else None,
        calibration_rows=accumulators[0].count,
        calibration_seconds=calibration_seconds,
        solve_seconds=solve_seconds,
    )
    return report, torch.stack(kept_blocks).reshape(weight.shape)


def _check_block(layer: PrunedLayer, g: int, result, count: int, fixed: Tensor | None) -> None:
    kept = result.kept
    where = f"{layer.name}" + (f" (group {g})" if layer.groups > 1 else "")
    if int((~kept).sum()) != count:
        raise PrunekitError(
            f"internal error: the solver removed {int((~kept).sum())} weights of {where} "
            f"instead of {count}"
        )
    if bool((result.weights[~kept] != 0).any()):
        raise PrunekitError(f"internal error: removed weights of {where} are not zero")
    if fixed is not None and bool((fixed & kept).any()):
        raise PrunekitError(f"internal error: the solver revived a removed weight of {where}")


def hold_fixed(
    task: BlockTask, result: LayerPruneResult, damp: float, updates: bool
) -> LayerPruneResult:
    """A solver's result with the fixed removals put back: the union of its removals and
    ``task.fixed`` loses, in each group (the block, or each N:M group of a row), the
    excess non-fixed removals of highest OBS saliency w²/[H⁻¹]_jj (|w| without an
    update); the kept weights are then the exact least squares on the support (or W's
    own values without an update). The solvers do not take fixed removals themselves."""
    W, fixed = task.weights, task.fixed
    H_damped, _dead = prepare_hessian(task.hessian, damp)
    H_damped = H_damped.to(W.device)
    w = W.to(torch.float64)
    if updates:
        score = w * w / torch.diagonal(damped_inverse(H_damped))
    else:
        score = w.abs()
    removed = ~result.kept | fixed
    width = task.pattern[1] if task.pattern is not None else W.numel()
    groups_removed = removed.reshape(-1, width)
    target = (
        torch.full((groups_removed.shape[0],), width - task.pattern[0], device=W.device)
        if task.pattern is not None
        else torch.tensor([task.count], device=W.device)
    )
    excess = groups_removed.sum(1) - target
    candidate = groups_removed & ~fixed.reshape(-1, width)
    keyed = torch.where(
        candidate, score.reshape(-1, width), torch.full_like(score.reshape(-1, width), -torch.inf)
    )
    order = torch.sort(keyed, dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(width, device=W.device).expand_as(order).contiguous())
    restore = candidate & (rank < excess[:, None])
    kept = ~(groups_removed & ~restore).reshape(W.shape)
    if updates:
        weights = least_squares_on_support(W, H_damped, kept)
    else:
        weights = w.clone()
    weights = torch.where(kept, weights, torch.zeros_like(weights)).to(W.dtype)
    return LayerPruneResult(weights, kept, float(layer_error(W, weights, task.hessian)))
