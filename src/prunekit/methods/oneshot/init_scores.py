"""Pruning-at-initialization scores (random, SNIP, GraSP, SynFlow) used as one-shot
selections on the *trained* weights; each removes its own end of its ranking."""

from __future__ import annotations

from prunekit.errors import ConfigError
from prunekit.methods.oneshot.flat import removed_from_mask
from prunekit.methods.oneshot.problem import OneShotProblem
from prunekit.methods.oneshot.registry import register_selection
from prunekit.methods.oneshot.results import Selection


def _init_score_selection(name: str):
    def select(problem: OneShotProblem, settings: None, update) -> Selection:
        if problem.init_scores is None:
            raise ConfigError(f"selection {name!r} needs init_scores: a scoring function")
        previous, pattern = problem.fixed_mask(), problem.pattern
        if pattern is not None:
            mask = problem.init_scores(name, previous, f"{pattern[0]}:{pattern[1]}")
        elif previous is not None:
            mask = problem.init_scores(name, previous)
        else:
            mask = problem.init_scores(name)
        return Selection(removed_from_mask(mask, problem.names))

    select.__doc__ = f"The {name} score of the trained weights (see prunekit.methods.init)."
    return select


for _name in ("random", "snip", "grasp", "synflow"):
    register_selection(_name)(_init_score_selection(_name))
