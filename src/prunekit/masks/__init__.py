"""The one mask type, prunable-parameter selection, rankings, N:M patterns,
enforcement and reports.

Conventions: a mask maps a parameter name to a bool tensor, ``True`` = kept.
Sparsity is the fraction of prunable weights removed, in [0, 1).
"""

from prunekit.masks.enforce import MaskEnforcer
from prunekit.masks.io import (
    from_torch_prune,
    from_torch_prune_state_dict,
    load_mask,
    save_mask,
    to_torch_prune,
)
from prunekit.masks.mask import Mask
from prunekit.masks.patterns import (
    check_nm,
    nm_flat_keep,
    nm_groups,
    nm_keep,
    nm_mask,
    nm_patterned,
    nm_removed_count,
    parse_pattern,
)
from prunekit.masks.ranking import count_to_remove, scores_to_mask
from prunekit.masks.report import LayerSparsity, SparsityReport, sparsity_report
from prunekit.masks.schedule import check_sparsity, exponential_schedule, stage_sparsities
from prunekit.masks.selection import classifier_parameter_name, prunable_parameters

__all__ = [
    "nm_groups",
    "nm_removed_count",
    "Mask",
    "MaskEnforcer",
    "LayerSparsity",
    "SparsityReport",
    "check_nm",
    "check_sparsity",
    "classifier_parameter_name",
    "count_to_remove",
    "exponential_schedule",
    "from_torch_prune",
    "from_torch_prune_state_dict",
    "load_mask",
    "nm_flat_keep",
    "nm_keep",
    "nm_mask",
    "nm_patterned",
    "parse_pattern",
    "prunable_parameters",
    "save_mask",
    "scores_to_mask",
    "sparsity_report",
    "stage_sparsities",
    "to_torch_prune",
]
