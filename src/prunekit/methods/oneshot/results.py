"""Typed results of one-shot pruning: what a selection, an update and the whole method
return. :class:`OneShotRecord` is the method's part of a run cell's ``result.json``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from torch import Tensor

from prunekit.masks import Mask


@dataclass
class SearchPass:
    """One pass of a local search: its quadratic objective, real training loss, swaps."""

    pass_index: int
    quadratic: float
    loss: float | None
    swaps: int


@dataclass
class SearchReport:
    """How a selection's search went (CBS-S): best pass, passes run, each pass."""

    best_pass: int
    passes: int
    scored_with_update: bool
    history: list[SearchPass] = field(default_factory=list)


@dataclass
class Selection:
    """A removal set (flat bool vector, True = removed) and how it was found.

    ``exact_step``: when the selection has already solved the exact update of the local
    model for ``removed`` (δ minimising ḡᵀδ + ½δᵀFδ with δ_Q = −w̄_Q, earlier removals
    held at 0, what ``cbs_u`` computes), that δ; the ``cbs_u`` update then applies it
    instead of solving again (unless the removal set changed after the selection)."""

    removed: Tensor
    search: SearchReport | None = None
    exact_step: Tensor | None = None


@dataclass
class Update:
    """New flat weights (removed ones exactly zero) after an update.

    ``predicted_loss_change`` is the local model's predicted change of the loss
    (``None`` without a Fisher); ``scale`` the factor applied to the kept weights'
    correction; ``scale_losses`` the training loss of each scale tried."""

    weights: Tensor
    predicted_loss_change: float | None = None
    scale: float | None = None
    scale_losses: dict[float, float] | None = None


@dataclass
class OneShotRecord:
    """What a one-shot method did, as written into ``result.json``. ``dead_weights_*``:
    kept weights on no input-to-output path in the selection's mask and in the final one
    (None: not analysed; see ``methods.oneshot.reclaim``). ``reclaim_losses``: the
    training loss after the update with the selection's mask and with the dead weights
    given back, when both were tried (the lower one was kept)."""

    selection: str
    update: str
    removed: int
    prunable: int
    selection_seconds: float
    update_seconds: float
    predicted_loss_change: float | None = None
    update_scale: float | None = None
    update_scale_losses: dict[float, float] | None = None
    search_best_pass: int | None = None
    search_passes: int | None = None
    search_scored_with_update: bool | None = None
    dead_weights_selected: int | None = None
    dead_weights_kept: int | None = None
    reclaim_losses: dict[str, float] | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class OneShotResult:
    """The mask (True = kept), the new prunable weights (removed ones exactly zero),
    the record and, for a search, its pass history."""

    mask: Mask
    weights: dict[str, Tensor]
    record: OneShotRecord
    search: SearchReport | None = None
