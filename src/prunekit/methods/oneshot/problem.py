"""What every one-shot method reads: the weights, the target count and the second-order
information, gathered once in a :class:`OneShotProblem`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from prunekit.errors import ConfigError
from prunekit.masks import Mask, nm_flat_keep, nm_groups
from prunekit.methods.oneshot.flat import mask_from_removed
from prunekit.second_order import EmpiricalFisher, lowest_k_mask
from prunekit.utils.types import WeightsLoss


@dataclass
class OneShotProblem:
    """The pruning problem of one (model, sparsity): methods read it and never change it.

    - ``weights``: the flat vector w̄ of the prunable weights, in the order of ``names``.
    - ``k``: exactly this many of them are removed (round(s·d), s = ``sparsity``).
    - ``fisher``: the factored empirical Fisher F = λI + GᵀG/m at w̄ (OBS, CBS, ...).
    - ``gradient``: the mean training gradient ḡ at w̄ (the mean of the Fisher's
      gradient rows). Given, the local model is first-order, ḡᵀδ + ½δᵀFδ, and every
      method that can uses it (OBS saliency, the updates, the L0 solver); ``None``
      takes w̄ as a minimum, ½δᵀFδ, as the OBS/CBS papers do.
    - ``training_loss(flat_w)``: the real loss on *training* data with the prunable
      weights set to ``flat_w`` (CBS's outer loop, update-scale choice).
    - ``init_scores(name)``: the mask of a pruning-at-initialization score at this
      sparsity (SNIP, GraSP... computed on the trained weights).
    - ``fixed_removed``: weights that must stay removed (an earlier stage's removals);
      they count towards ``k``.
    - ``pattern``: an N:M pattern (N kept in every M consecutive inputs of a row; see
      ``masks.patterns``) the removal set must have; ``k`` is then the pattern's count.
    """

    model: nn.Module
    names: Sequence[str]
    weights: Tensor
    sparsity: float
    k: int
    fisher: EmpiricalFisher | None = None
    gradient: Tensor | None = None
    training_loss: WeightsLoss | None = None
    init_scores: Callable[..., Mask] | None = None
    generator: torch.Generator | None = None
    fixed_removed: Tensor | None = None
    pattern: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        d = self.weights.numel()
        if self.fisher is not None and self.fisher.dim != d:
            raise ConfigError(
                f"the Fisher covers {self.fisher.dim} weights but the model has {d} prunable"
            )
        if self.gradient is not None and self.gradient.shape != (d,):
            raise ConfigError(f"the mean gradient must have {d} entries, got {self.gradient.shape}")
        if self.fixed_removed is not None:
            if self.fixed_removed.shape != (d,) or self.fixed_removed.dtype != torch.bool:
                raise ConfigError(f"fixed_removed must be a bool vector of length {d}")
            if int(self.fixed_removed.sum()) > self.k:
                raise ConfigError(
                    f"{int(self.fixed_removed.sum())} weights are already removed, more than "
                    f"the {self.k} this sparsity removes: give a higher sparsity"
                )

    def lowest_k(self, scores: Tensor) -> Tensor:
        """Removal mask (True = removed) of the k lowest ``scores`` (with a pattern: the
        M − N lowest of every group), earlier removals (``fixed_removed``) first whatever
        their score; ties by position."""
        if self.fixed_removed is not None:
            fixed = self.fixed_removed.to(scores.device)
            scores = torch.where(fixed, torch.full_like(scores, -torch.inf), scores)
        if self.pattern is not None:
            return ~nm_flat_keep(scores.cpu(), self.shapes, self.pattern).to(scores.device)
        return lowest_k_mask(scores, self.k)

    @property
    def shapes(self) -> list[tuple[int, ...]]:
        """The shapes of the named parameters, in order."""
        return [tuple(self.model.get_parameter(n).shape) for n in self.names]

    def groups(self) -> Tensor | None:
        """Each weight's N:M group (-1 outside patterned tensors), or None."""
        return None if self.pattern is None else nm_groups(self.shapes, self.pattern[1])

    def fixed_mask(self) -> Mask | None:
        """``fixed_removed`` as a :class:`Mask` (True = kept), or None when empty."""
        if self.fixed_removed is None or not bool(self.fixed_removed.any()):
            return None
        return mask_from_removed(self.fixed_removed, self.model, self.names)

    @property
    def dim(self) -> int:
        return self.weights.numel()

    def require_fisher(self, method: str) -> EmpiricalFisher:
        if self.fisher is None:
            raise ConfigError(f"{method} needs an empirical Fisher (gradient samples)")
        return self.fisher

    def require_training_loss(self, method: str) -> WeightsLoss:
        if self.training_loss is None:
            raise ConfigError(f"{method} needs training_loss: the real loss on training data")
        return self.training_loss
