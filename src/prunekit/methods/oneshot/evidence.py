"""Gathering what one-shot methods need from a model and its training data: gradient
samples and the factored empirical Fisher, the mean gradient, the real training loss
and pruning-at-init scores. Used by the one-call API and by ``prunekit prune`` alike.

Samples: a seeded permutation of the training samples; the Fisher uses its first
m·b samples (m gradients of b samples each), the training loss its first
``loss_samples``. A request for more samples than there are is an error, never a
silent clamp.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from prunekit.data import class_balanced_batches
from prunekit.errors import ConfigError
from prunekit.masks import Mask
from prunekit.methods.init import score_and_mask
from prunekit.methods.init.options import init_method_options
from prunekit.methods.oneshot.flat import layer_sizes
from prunekit.methods.oneshot.layerwise import LayerwiseSettings, prune_layerwise
from prunekit.methods.oneshot.prune import prune_one_shot
from prunekit.methods.oneshot.registry import get_method, settings_for
from prunekit.methods.oneshot.results import OneShotResult
from prunekit.methods.oneshot.training_loss import weights_loss
from prunekit.second_order import (
    EmpiricalFisher,
    check_memory,
    chunk_blocks,
    estimate_bytes,
    gather_columns_transposed,
    minibatch_gradients,
    one_block,
    per_sample_gradients,
    restrict_blocks,
)
from prunekit.utils.distributed import gather_rows, shard_bounds
from prunekit.utils.settings import setting
from prunekit.utils.types import WeightsLoss


@dataclass
class FisherSettings:
    """The local model's evidence: the empirical Fisher F = λI + GᵀG/m (m gradients of
    ``batch_size`` samples each, dampening λ, blocks ``full``, ``layer`` or a chunk size,
    the algebra's dtype) and, with ``first_order``, the mean gradient ḡ."""

    samples: int = setting(10000, "m: number of gradients in the empirical Fisher")
    batch_size: int = setting(1, "samples per gradient (1: per-sample gradients)")
    damp: float = setting(1e-3, "Fisher dampening λ (> 0)")
    blocks: str = setting("full", "Fisher blocks: full, layer, or a chunk size like 10000")
    dtype: str = setting("float32", "dtype of the Fisher algebra", choices=["float32", "float64"])
    first_order: bool | None = setting(
        None,
        "local model with the mean training gradient ḡ (ḡᵀδ + ½δᵀFδ); off: the trained "
        "weights are taken as a minimum (½δᵀFδ), as in the OBS/CBS papers; default: on "
        "in stages (fresh samples each stage), off in one shot",
    )

    def __post_init__(self) -> None:
        if self.samples < 1 or self.batch_size < 1:
            raise ConfigError(
                f"fisher samples and batch size must be >= 1, got {self.samples} and "
                f"{self.batch_size}"
            )
        if not (math.isfinite(self.damp) and self.damp > 0):
            raise ConfigError(f"the Fisher dampening must be a positive number, got {self.damp}")
        if self.dtype not in ("float32", "float64"):
            raise ConfigError(f"fisher dtype must be float32 or float64, got {self.dtype!r}")
        in_dtype = float(torch.tensor(self.damp, dtype=self.torch_dtype))
        if not (math.isfinite(in_dtype) and in_dtype > 0):
            raise ConfigError(
                f"the Fisher dampening {self.damp:g} is {in_dtype:g} in the Fisher dtype "
                f"{self.dtype}: it must be finite and positive there (float32 holds "
                "1.2e-38 to 3.4e38; use --fisher-dtype float64 or a smaller dampening)"
            )
        fisher_blocks(self.blocks, [1])  # validates the spelling

    def resolved(self, staged: bool) -> FisherSettings:
        """These settings with ``first_order`` decided: the default (None) is on when
        pruning in stages, off in one shot (at the trained weights ḡ ≈ 0)."""
        if self.first_order is not None:
            return self
        return dataclasses.replace(self, first_order=staged)

    @property
    def sample_count(self) -> int:
        return self.samples * self.batch_size

    @property
    def torch_dtype(self) -> torch.dtype:
        return torch.float64 if self.dtype == "float64" else torch.float32


def fisher_blocks(spec: str, sizes: list[int]) -> list[tuple[int, int]]:
    """``full`` → one block; ``layer`` → one per layer; an integer → chunks of that size."""
    if spec == "full":
        return one_block(sum(sizes))
    if spec == "layer":
        return chunk_blocks(sizes, None)
    try:
        size = int(spec)
    except (TypeError, ValueError):
        raise ConfigError(
            f"fisher blocks must be 'full', 'layer' or a chunk size, got {spec!r}"
        ) from None
    return chunk_blocks(sizes, size)


DataSource = Dataset | DataLoader | tuple[Tensor, Tensor]
DEFAULT_LOSS_SAMPLES = 10000


def as_dataset(data: DataSource) -> Dataset:
    """A dataset from ``(inputs, targets)`` tensors, a Dataset, or a DataLoader's dataset."""
    if isinstance(data, DataLoader):
        return data.dataset
    if isinstance(data, tuple | list) and len(data) == 2 and isinstance(data[0], Tensor):
        x, y = data
        if len(x) != len(y):
            raise ConfigError(f"inputs and targets differ in length: {len(x)} vs {len(y)}")
        return TensorDataset(x, y)
    if isinstance(data, Dataset):
        return data
    raise ConfigError(
        f"training data must be (inputs, targets) tensors, a Dataset or a DataLoader, "
        f"got {type(data).__name__}"
    )


def sample_order(dataset: Dataset, seed: int) -> list[int]:
    """The seeded permutation of the training samples that every draw reads from."""
    return torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed)).tolist()


def stack_samples(dataset: Dataset, indices: Sequence[int], batch_size: int = 1000):
    """Inputs and targets of ``indices`` as two tensors."""
    loader = DataLoader(Subset(dataset, list(indices)), batch_size=batch_size, shuffle=False)
    xs, ys = zip(*loader, strict=True)
    return torch.cat(xs), torch.cat(ys)


def take(order: list[int], count: int, what: str, option: str) -> list[int]:
    if count > len(order):
        raise ConfigError(
            f"{what} needs {count} training samples but only {len(order)} are available; "
            f"lower {option}"
        )
    return order[:count]


@dataclass
class FisherEstimate:
    """The factored Fisher at the model's weights, the mean gradient ḡ (the mean of G's
    rows; ``None`` unless the settings ask for a first-order local model), the number
    of gradients m actually used and the seconds taken. With ``coordinates`` (a bool
    vector over the d weights) both cover only the weights marked True, in order:
    the weights still alive in a stage, whose earlier removals are held at zero."""

    fisher: EmpiricalFisher
    gradient: Tensor | None
    samples_used: int
    seconds: float
    coordinates: Tensor | None = None


def estimate_fisher(
    model: nn.Module,
    names: Sequence[str],
    x: Tensor,
    y: Tensor,
    settings: FisherSettings,
    coordinates: Tensor | None = None,
) -> FisherEstimate:
    """Gradients of ``model`` (eval mode) at its current weights on ``(x, y)``, grouped
    ``settings.batch_size`` at a time, and the factored Fisher of them; with
    ``coordinates`` (bool, one per weight), of the weights marked True only: G is then
    never formed over the others (the blocks are renumbered over the kept weights)."""
    started = time.perf_counter()
    # under torch.distributed each process computes its share of the m rows and every
    # process gathers all of them: G (m·d numbers) is what CBS, OBS and the L0 solver
    # read, so it is gathered rather than only the m×m Gram GGᵀ
    m = len(x) // settings.batch_size
    sizes = layer_sizes(model, names)
    if coordinates is not None:
        coordinates = coordinates.cpu()
        if coordinates.dtype != torch.bool or coordinates.shape != (sum(sizes),):
            raise ConfigError(
                f"the Fisher's coordinates must be a bool vector of length {sum(sizes)}"
            )
        if not bool(coordinates.any()):
            raise ConfigError("the Fisher needs at least one weight to cover")
        if bool(coordinates.all()):
            coordinates = None  # every weight: the plain estimate
    check_fisher_fits(model, names, m, settings, x.device, coordinates)
    start, end = shard_bounds(m)
    rows = slice(start * settings.batch_size, end * settings.batch_size)
    # weight-major G: the swap search, restrictions and the L0 solver read it per weight
    if settings.batch_size == 1:
        local = per_sample_gradients(
            model, names, x[rows], y[rows], weight_major=True, coordinates=coordinates
        )
    else:
        local = minibatch_gradients(
            model, names, x[rows], y[rows], settings.batch_size, weight_major=True,
            coordinates=coordinates,
        )  # fmt: skip
    grads = gather_rows(local, m)  # EmpiricalFisher refuses NaN/Inf entries
    if not grads.T.is_contiguous():  # gathered across processes: back to weight-major,
        every = torch.ones(grads.shape[1], dtype=torch.bool, device=grads.device)
        grads = gather_columns_transposed(grads, every).T  # the layout one process has
    blocks = fisher_blocks(settings.blocks, sizes)
    if coordinates is not None:
        blocks = restrict_blocks(blocks, coordinates)
    fisher = EmpiricalFisher(grads, settings.damp, blocks, dtype=settings.torch_dtype)
    gradient = fisher.grads.mean(0) if settings.first_order else None
    return FisherEstimate(
        fisher, gradient, grads.shape[0], time.perf_counter() - started, coordinates
    )


def check_fisher_fits(
    model: nn.Module,
    names: Sequence[str],
    m: int,
    settings: FisherSettings,
    device: torch.device,
    coordinates: Tensor | None = None,
) -> None:
    """Refuse, before any gradient is computed, a Fisher whose m × d gradients and
    factors would not fit: ResourceError with the figure and what to do instead.
    ``coordinates``: the weights the Fisher covers (default all d)."""
    sizes = layer_sizes(model, names)
    grad_itemsize = model.get_parameter(names[0]).element_size() if names else 4
    blocks = fisher_blocks(settings.blocks, sizes)
    if coordinates is not None:
        blocks = restrict_blocks(blocks, coordinates)
    d = sum(e - s for s, e in blocks)
    converts = grad_itemsize != torch.empty((), dtype=settings.torch_dtype).element_size()
    needed = m * d * grad_itemsize + estimate_bytes(
        blocks, m, settings.torch_dtype, include_grads=converts
    )
    check_memory(
        needed,
        None,
        device,
        f"the empirical Fisher of {d:,} weights from m = {m:,} gradients (G alone is "
        f"{m * d * grad_itemsize / 2**30:,.1f} GiB)",
        "use fewer gradient samples (--fisher-samples), or a layer-wise method "
        "(sparsegpt, obc, lw_l0, lw_magnitude), which never forms G: its memory is the "
        "largest layer's Hessian",
    )


def init_scorer(
    model: nn.Module,
    names: Sequence[str],
    sparsity: float,
    dataset: Dataset,
    samples_per_class: int,
    seed: int,
    device: torch.device | str = "cpu",
) -> Callable[[str], Mask]:
    """``scores(name, previous=None, pattern=None)``: the mask of a pruning-at-init
    score of ``model`` at ``sparsity`` (or with an N:M ``pattern``) on a class-balanced
    training sample (``samples_per_class`` of each class); weights removed in
    ``previous`` stay removed."""

    def scores(name: str, previous: Mask | None = None, pattern: str | None = None) -> Mask:
        sample = class_balanced_batches(dataset, samples_per_class, 1, seed=seed)
        return score_and_mask(
            name,
            model,
            None if pattern else sparsity,
            pattern=pattern,
            data=[(x.to(device), y.to(device)) for x, y in sample],
            params=names,
            previous=previous,
            **init_method_options(name, seed),
        )

    return scores


@dataclass
class TrainingEvidence:
    """What the methods of one seed share: the loss samples' training loss, when a
    method needs it the Fisher estimate, one input sample's shape and, for layer-wise
    methods, the calibration inputs."""

    training_loss: WeightsLoss
    fisher: FisherEstimate | None
    input_shape: tuple[int, ...] | None = None
    calibration: Tensor | None = None


def gather_evidence(
    model: nn.Module,
    names: Sequence[str],
    dataset: Dataset,
    *,
    fisher_settings: FisherSettings,
    loss_samples: int | None,
    seed: int,
    need_fisher: bool,
    device: torch.device | str = "cpu",
    calibration_samples: int | None = None,
    fisher_coordinates: Tensor | None = None,
) -> TrainingEvidence:
    """Draw the seed's samples and compute the training loss (on ``loss_samples``
    samples; None: all of them up to 10,000) and, if ``need_fisher``, the Fisher at
    ``model``'s current weights (over the weights marked True in
    ``fisher_coordinates`` only, when given: see :func:`estimate_fisher`); with
    ``calibration_samples``, the inputs of that many samples for the layer-wise methods
    (the first ones of the same seeded draw)."""
    order = sample_order(dataset, seed)
    if loss_samples is None:
        loss_samples = min(DEFAULT_LOSS_SAMPLES, len(order))
    loss_x, loss_y = stack_samples(
        dataset, take(order, loss_samples, "the training loss", "loss_samples")
    )
    training_loss = weights_loss(model, names, loss_x.to(device), loss_y.to(device))
    estimate = None
    if need_fisher:
        indices = take(
            order,
            fisher_settings.sample_count,
            "the Fisher (samples × batch size)",
            "fisher samples or fisher batch size",
        )
        x, y = stack_samples(dataset, indices)
        estimate = estimate_fisher(
            model, names, x.to(device), y.to(device), fisher_settings, fisher_coordinates
        )
    calibration = None
    if calibration_samples is not None:
        indices = take(order, calibration_samples, "layer-wise calibration", "calibration_samples")
        calibration, _ = stack_samples(dataset, indices)
    return TrainingEvidence(training_loss, estimate, tuple(loss_x.shape[1:]), calibration)


def prune_with_evidence(
    model: nn.Module,
    names: Sequence[str],
    method: str,
    sparsity: float,
    evidence: TrainingEvidence,
    init_scores: Callable[[str], Mask],
    settings: Iterable[object],
    seed: int,
    fixed_removed: Tensor | None = None,
    pattern: str | None = None,
    reclaim_dead: bool = True,
) -> OneShotResult:
    """:func:`prune_one_shot` on gathered evidence, its generator seeded with ``seed``;
    a layer-wise method runs :func:`prune_layerwise` on the evidence's calibration inputs."""
    if get_method(method).layerwise:
        if evidence.calibration is None:
            raise ConfigError(f"{method} needs calibration inputs: gather calibration_samples")
        return prune_layerwise(
            model,
            names,
            method,
            sparsity,
            evidence.calibration,
            settings=settings_for(LayerwiseSettings, settings),
            pattern=pattern,
            fixed_removed=fixed_removed,
            seed=seed,
        )
    estimate = evidence.fisher
    if estimate is not None and estimate.coordinates is not None:
        alive = None if fixed_removed is None else ~fixed_removed.cpu()
        if alive is None or not torch.equal(estimate.coordinates, alive):
            raise ConfigError(
                "the Fisher was gathered over other weights than the alive ones: gather "
                "it with fisher_coordinates = the weights not in fixed_removed"
            )
    return prune_one_shot(
        model,
        names,
        method,
        sparsity,
        fisher=None if estimate is None else estimate.fisher,
        gradient=None if estimate is None else estimate.gradient,
        training_loss=evidence.training_loss,
        init_scores=init_scores,
        settings=settings,
        generator=torch.Generator().manual_seed(seed),
        fixed_removed=fixed_removed,
        pattern=pattern,
        input_shape=evidence.input_shape,
        reclaim_dead=reclaim_dead,
    )
