"""One-shot pruning after training: a registered *selection* (which weights go) and
*update* (how the kept weights compensate), each in its own file.

| name | kind | file |
|---|---|---|
| ``magnitude``, ``layerwise_magnitude`` | selection | ``magnitude.py`` |
| ``obs`` / ``woodfisher`` | selection / update | ``woodfisher.py`` |
| ``cbs_s`` / ``cbs_u`` | selection / update | ``cbs.py`` |
| ``random``, ``snip``, ``grasp``, ``synflow`` | selection | ``init_scores.py`` |
| ``l0`` (joint L0 solver: IHT, backsolve, swaps) | selection | ``l0.py`` |
| ``sparsegpt``, ``obc``, ``lw_l0``, ``lw_magnitude`` | layer-wise | ``layerwise.py`` |
| ``none`` | update | ``update.py`` |

Presets: ``magnitude``, ``layerwise_magnitude``, ``woodfisher`` (obs+woodfisher),
``cbs`` (cbs_s+cbs_u) and ``l0`` (l0+cbs_u); any pair is written ``selection+update``.
Every method removes exactly round(s·d) prunable weights. :func:`prune_model` is the
one call from a model and its training data; :func:`prune_one_shot` runs a method on
second-order information already gathered.
"""

# Importing a method's file registers it.
from prunekit.methods.oneshot import (  # noqa: F401
    cbs,
    init_scores,
    l0,
    layerwise,
    magnitude,
    update,
    woodfisher,
)
from prunekit.methods.oneshot.api import prune_model
from prunekit.methods.oneshot.cbs import CBSSettings
from prunekit.methods.oneshot.evidence import FisherSettings
from prunekit.methods.oneshot.l0 import L0Settings
from prunekit.methods.oneshot.layerwise import LayerwiseSettings, prune_layerwise
from prunekit.methods.oneshot.problem import OneShotProblem
from prunekit.methods.oneshot.prune import prune_one_shot
from prunekit.methods.oneshot.registry import (
    PRESETS,
    SELECTIONS,
    UPDATES,
    MethodSpec,
    canonical_name,
    get_method,
    register_layerwise,
    register_preset,
    register_selection,
    register_update,
)
from prunekit.methods.oneshot.results import (
    OneShotRecord,
    OneShotResult,
    SearchReport,
    Selection,
    Update,
)
from prunekit.methods.oneshot.update import UpdateSettings

__all__ = [
    "PRESETS",
    "SELECTIONS",
    "UPDATES",
    "CBSSettings",
    "FisherSettings",
    "L0Settings",
    "LayerwiseSettings",
    "MethodSpec",
    "OneShotProblem",
    "OneShotRecord",
    "OneShotResult",
    "SearchReport",
    "Selection",
    "Update",
    "UpdateSettings",
    "canonical_name",
    "get_method",
    "prune_layerwise",
    "prune_model",
    "prune_one_shot",
    "register_layerwise",
    "register_preset",
    "register_selection",
    "register_update",
]
