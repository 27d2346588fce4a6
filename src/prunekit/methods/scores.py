"""Per-weight scores and which end of their ranking a method removes."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from prunekit.masks import Mask, scores_to_mask
from prunekit.masks.ranking import RemoveEnd


@dataclass
class Scores:
    """Scores keyed by parameter name; ``remove`` says which end of the ranking goes.

    Magnitude, SNIP and SynFlow remove the ``"lowest"`` scores, GraSP the ``"highest"``.
    """

    values: dict[str, Tensor]
    remove: RemoveEnd = "lowest"

    def to_mask(
        self,
        sparsity: float | dict[str, float],
        scope: str = "global",
        previous: Mask | None = None,
    ) -> Mask:
        """Mask removing exactly round(s·d) weights by these scores (see ``scores_to_mask``)."""
        return scores_to_mask(
            self.values, sparsity, scope=scope, remove=self.remove, previous=previous
        )
