"""Pruning at initialisation: per-weight scores computed before training.

Every scoring function is pure: it takes a model (left unchanged: weights, buffers,
modes and ``.grad``), the names of the parameters to score (default:
``prunekit.masks.prunable_parameters``), data or settings, and returns
:class:`~prunekit.methods.scores.Scores` saying which end of the ranking is removed.

| method | score | removed |
|---|---|---|
| random | uniform noise | lowest |
| magnitude | ``|θ|`` | lowest |
| SNIP | ``|θ ⊙ ∇L|`` | lowest |
| GraSP | ``−θ ⊙ Hg`` | highest |
| SynFlow | ``|θ| ⊙ ∂R/∂|θ|`` | lowest |

``score_and_mask(name, model, sparsity, data=...)`` is the one entry point to a mask;
``prune_iteratively`` runs several rounds with the exponential schedule.
"""

from prunekit.methods.init.grasp import grasp_scores
from prunekit.methods.init.iterative import prune_iteratively
from prunekit.methods.init.magnitude import magnitude_scores
from prunekit.methods.init.random import random_scores
from prunekit.methods.init.registry import (
    INIT_METHODS,
    InitMethod,
    get_init_method,
    score_and_mask,
)
from prunekit.methods.init.snip import snip_scores
from prunekit.methods.init.synflow import synflow_scores

__all__ = [
    "INIT_METHODS",
    "InitMethod",
    "get_init_method",
    "grasp_scores",
    "magnitude_scores",
    "prune_iteratively",
    "random_scores",
    "score_and_mask",
    "snip_scores",
    "synflow_scores",
]
