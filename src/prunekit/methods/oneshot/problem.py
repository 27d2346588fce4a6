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
class AliveModel:
    """The local model ḡᵀδ + ½δᵀFδ on the weights still alive (``alive``, bool over all
    d weights): their values ``weights``, F restricted to them and ḡ (or None) on them."""

    alive: Tensor
    weights: Tensor
    fisher: EmpiricalFisher
    gradient: Tensor | None


@dataclass
class OneShotProblem:
    """The pruning problem of one (model, sparsity): methods read it and never change it.

    - ``weights``: the flat vector w̄ of the prunable weights, in the order of ``names``.
    - ``k``: exactly this many of them are removed (round(s·d), s = ``sparsity``).
    - ``fisher``: the factored empirical Fisher F = λI + GᵀG/m at w̄ (OBS, CBS, ...),
      over all d weights, or over the weights still alive only (those not in
      ``fixed_removed``, in order): earlier removals are held at zero, so their
      coordinates take no part in any method's local model, and a stage need not
      form G over them. Methods read it through :meth:`alive_model`.
    - ``gradient``: the mean training gradient ḡ at w̄ (the mean of the Fisher's
      gradient rows), over the same weights as ``fisher``. Given, the local model is
      first-order, ḡᵀδ + ½δᵀFδ, and every method that can uses it (OBS saliency, the
      updates, the L0 solver); ``None`` takes w̄ as a minimum, ½δᵀFδ, as the OBS/CBS
      papers do.
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
        if self.fixed_removed is not None:
            if self.fixed_removed.shape != (d,) or self.fixed_removed.dtype != torch.bool:
                raise ConfigError(f"fixed_removed must be a bool vector of length {d}")
            if int(self.fixed_removed.sum()) > self.k:
                raise ConfigError(
                    f"{int(self.fixed_removed.sum())} weights are already removed, more than "
                    f"the {self.k} this sparsity removes: give a higher sparsity"
                )
        alive = int(self.alive.sum())
        covered = d if self.fisher is None else self.fisher.dim
        if covered not in (d, alive):
            raise ConfigError(
                f"the Fisher covers {covered} weights but the model has {d} prunable, "
                f"{alive} of them alive: give a Fisher of all of them or of the alive ones"
            )
        if self.gradient is not None and self.gradient.shape != (covered,):
            raise ConfigError(
                f"the mean gradient must have {covered} entries (the weights the Fisher "
                f"covers), got {tuple(self.gradient.shape)}"
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

    @property
    def alive(self) -> Tensor:
        """The weights not in ``fixed_removed`` (bool, True = alive, on the CPU)."""
        if self.fixed_removed is None:
            return torch.ones(self.dim, dtype=torch.bool)
        return ~self.fixed_removed.cpu()

    @property
    def fisher_covers_alive_only(self) -> bool:
        """Whether ``fisher`` (and ``gradient``) leave out the earlier removals."""
        return self.fisher is not None and self.fisher.dim != self.dim

    def alive_model(self, method: str, cached: bool = True) -> AliveModel:
        """The local model on the weights still alive, in the Fisher's dtype and device:
        earlier removals are held at zero, which is the same as dropping their
        coordinates. F restricted to the alive weights is the Fisher itself when it
        covers them only, else a copy of G's columns: cached on the Fisher (the
        selection and the update share it), or with ``cached=False`` a weight-major
        copy freed with the caller's reference."""
        fisher = self.require_fisher(method)
        alive = self.alive.to(fisher.device)
        weights = self.weights.to(device=fisher.device, dtype=fisher.dtype)
        gradient = None if self.gradient is None else self.gradient.to(fisher.grads)
        if not self.fisher_covers_alive_only:
            fisher = fisher.restricted(alive) if cached else fisher.restricted_transposed(alive)
            gradient = None if gradient is None else gradient[alive]
        elif not cached:  # weight-major, as restricted_transposed gives (no copy if it is)
            fisher = fisher.restricted_transposed(
                torch.ones(fisher.dim, dtype=torch.bool, device=fisher.device)
            )
        return AliveModel(alive, weights[alive], fisher, gradient)

    def require_fisher(self, method: str) -> EmpiricalFisher:
        if self.fisher is None:
            raise ConfigError(f"{method} needs an empirical Fisher (gradient samples)")
        return self.fisher

    def require_training_loss(self, method: str) -> WeightsLoss:
        if self.training_loss is None:
            raise ConfigError(f"{method} needs training_loss: the real loss on training data")
        return self.training_loss
