"""Magnitude pruning of a trained network: remove the k smallest |w|.

Global magnitude ranks all prunable weights together; layer-wise magnitude prunes each
layer to the target sparsity on its own. Exactly round(s·d) weights are removed.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from prunekit.masks import scores_to_mask
from prunekit.methods.oneshot.flat import removed_from_mask
from prunekit.second_order import magnitude_start


def global_magnitude_selection(w: Tensor, k: int) -> Tensor:
    """Flat removal mask (True = removed) of the k smallest |w| over all layers."""
    return magnitude_start(w, k)


def layerwise_magnitude_selection(
    model: nn.Module, names: Sequence[str], sparsity: float
) -> Tensor:
    """Flat removal mask pruning each named layer to ``sparsity`` by |w|."""
    scores = {n: model.get_parameter(n).detach().abs() for n in names}
    return removed_from_mask(scores_to_mask(scores, sparsity, scope="layerwise"), names)
