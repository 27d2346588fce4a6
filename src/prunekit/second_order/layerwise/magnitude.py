"""The baseline: remove the smallest |w| of the layer, no update."""

from __future__ import annotations

from torch import Tensor

from prunekit.second_order.layerwise.objective import (
    LayerPruneResult,
    check_count,
    check_layer,
    lowest_in_groups,
    lowest_k,
    make_result,
)


def magnitude_layer(
    W: Tensor, H: Tensor, count: int | None, *, pattern: tuple[int, int] | None = None
) -> LayerPruneResult:
    """Remove the ``count`` smallest |w| over the whole layer (ties to the lower flat
    index), or with ``pattern`` = (n, m) the m − n smallest of each group of m inputs of
    each row. Kept weights are unchanged; ``error`` is measured on H (undamped)."""
    check_layer(W, H)
    count = check_count(W, count, pattern)
    scores = W.abs()
    removed = lowest_in_groups(scores, pattern) if pattern else lowest_k(scores, count)
    return make_result(W, W, ~removed, H, count)
