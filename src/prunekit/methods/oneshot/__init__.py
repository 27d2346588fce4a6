"""One-shot pruning after training: magnitude, OBS/WoodFisher, CBS-S and CBS-U."""

from prunekit.methods.oneshot.methods import (
    INIT_SCORE_SELECTIONS,
    PRESETS,
    SELECTIONS,
    UPDATES,
    CBSSettings,
    OneShotResult,
    needs_fisher,
    parse_method,
    prune_one_shot,
)

__all__ = [
    "INIT_SCORE_SELECTIONS",
    "PRESETS",
    "SELECTIONS",
    "UPDATES",
    "CBSSettings",
    "OneShotResult",
    "needs_fisher",
    "parse_method",
    "prune_one_shot",
]
