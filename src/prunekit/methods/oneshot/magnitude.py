"""Magnitude pruning of a trained network: remove the k smallest |w|.

``magnitude`` ranks all prunable weights together (global); ``layerwise_magnitude``
prunes each layer to the target sparsity on its own. Exactly round(s·d) weights are
removed; ties go by position.
"""

from __future__ import annotations

from prunekit.methods.init import magnitude_scores
from prunekit.methods.oneshot.flat import removed_from_mask
from prunekit.methods.oneshot.problem import OneShotProblem
from prunekit.methods.oneshot.registry import register_preset, register_selection
from prunekit.methods.oneshot.results import Selection


@register_selection("magnitude")
def global_magnitude(problem: OneShotProblem, settings: None, update) -> Selection:
    """The k smallest |w| over all prunable weights."""
    return Selection(problem.lowest_k(problem.weights.abs()))


@register_selection("layerwise_magnitude")
def layerwise_magnitude(problem: OneShotProblem, settings: None, update) -> Selection:
    """Each layer's smallest |w|, every layer pruned to the target sparsity."""
    scores = magnitude_scores(problem.model, params=problem.names)
    return Selection(
        removed_from_mask(scores.to_mask(problem.sparsity, "layerwise"), problem.names)
    )


register_preset("magnitude", "magnitude", "none")
register_preset("layerwise_magnitude", "layerwise_magnitude", "none")
