"""Second-order machinery as pure tensor algebra: per-sample gradients, the factored
block-diagonal empirical Fisher, OBS/WoodFisher, CBS-S (selection), CBS-U (update), the
local model with a mean gradient ḡ, and the joint L0 solver.

Conventions: ``w`` is a flat tensor of the d prunable weights, ``G`` an (m, d) matrix of
per-sample gradients, ``removed`` a bool tensor of length d with True = removed.
"""

from prunekit.second_order.cbs_select import (
    PassRecord,
    SwapSearchResult,
    SwapState,
    cbs_select,
    magnitude_start,
    random_magnitude_mask,
    rmp_start,
    swap_pass,
)
from prunekit.second_order.cbs_update import cbs_update, choose_solver
from prunekit.second_order.fisher import (
    EmpiricalFisher,
    check_memory,
    chunk_blocks,
    estimate_bytes,
    gather_columns_transposed,
    layer_blocks,
    one_block,
    restrict_blocks,
)
from prunekit.second_order.gradients import (
    gradients_from_batches,
    minibatch_gradients,
    per_sample_gradients,
)
from prunekit.second_order.l0_solver import L0Result, L0Step, l0_solve, lipschitz_constant
from prunekit.second_order.local_model import (
    local_change,
    mean_gradient,
    newton_point,
)
from prunekit.second_order.obs import (
    WeightUpdate,
    lowest_k_mask,
    obs_saliency,
    woodfisher_select,
    woodfisher_update,
)

__all__ = [
    "EmpiricalFisher",
    "L0Result",
    "L0Step",
    "PassRecord",
    "SwapSearchResult",
    "SwapState",
    "WeightUpdate",
    "cbs_select",
    "cbs_update",
    "choose_solver",
    "chunk_blocks",
    "check_memory",
    "estimate_bytes",
    "gather_columns_transposed",
    "gradients_from_batches",
    "l0_solve",
    "layer_blocks",
    "lipschitz_constant",
    "local_change",
    "lowest_k_mask",
    "magnitude_start",
    "mean_gradient",
    "minibatch_gradients",
    "newton_point",
    "obs_saliency",
    "one_block",
    "per_sample_gradients",
    "random_magnitude_mask",
    "restrict_blocks",
    "rmp_start",
    "swap_pass",
    "woodfisher_select",
    "woodfisher_update",
]
