"""Which parameters of a model are prunable.

By default the ``weight`` of every ``nn.Conv*d`` and ``nn.Linear`` layer is prunable,
the final classifier included, and so are the input projections of every
``nn.MultiheadAttention`` (``in_proj_weight``, or ``q/k/v_proj_weight`` when kdim or vdim
differ; its ``out_proj`` is a Linear): they are Linear maps held as raw parameters.
Biases and normalisation layers are never prunable unless a user pattern names them
explicitly.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence

from torch import nn

from prunekit.errors import ConfigError

DEFAULT_PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
)


_INPUT_PROJECTIONS = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")


def _projects_like_linear(
    module: nn.Module, types: tuple[type, ...], excluded: tuple[type, ...]
) -> bool:
    linear = any(issubclass(nn.Linear, t) for t in types) or isinstance(module, types)
    return linear and not isinstance(module, excluded) and nn.Linear not in excluded


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def classifier_parameter_name(model: nn.Module) -> str | None:
    """Qualified name of the weight of the last ``nn.Linear`` module (the classifier)."""
    last = None
    for module_name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = module_name
    if last is None:
        return None
    return f"{last}.weight" if last else "weight"


def prunable_parameters(
    model: nn.Module,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    module_types: Sequence[type[nn.Module]] | None = None,
    exclude_module_types: Sequence[type[nn.Module]] | None = None,
    keep_classifier_dense: bool = False,
    keep_first_layer_dense: bool = False,
) -> dict[str, nn.Parameter]:
    """Return the prunable parameters of ``model`` by qualified name, in model order.

    A parameter is prunable when it is the ``weight`` of a module whose type is in
    ``module_types`` (default: Linear and Conv layers) and not in
    ``exclude_module_types`` (an ``nn.MultiheadAttention``'s input projections count as
    Linear weights, unless its own type is excluded), or when its name matches an
    ``include`` glob pattern (e.g. ``"features.*.weight"``); names matching an
    ``exclude`` pattern are removed.
    ``keep_classifier_dense`` excludes the last Linear layer, ``keep_first_layer_dense``
    the first prunable layer (the CBS paper's ResNet20 setting keeps both dense).
    """
    types = tuple(module_types) if module_types else DEFAULT_PRUNABLE_TYPES
    excluded_types = tuple(exclude_module_types or ())
    params = dict(model.named_parameters())
    chosen: dict[str, nn.Parameter] = {}
    for module_name, module in model.named_modules():
        if isinstance(module, types) and not isinstance(module, excluded_types):
            weight = getattr(module, "weight", None)
            if isinstance(weight, nn.Parameter):
                name = f"{module_name}.weight" if module_name else "weight"
                chosen[name] = weight
        if isinstance(module, nn.MultiheadAttention) and _projects_like_linear(
            module, types, excluded_types
        ):
            prefix = f"{module_name}." if module_name else ""
            for attribute in _INPUT_PROJECTIONS:
                weight = getattr(module, attribute, None)
                if isinstance(weight, nn.Parameter):
                    chosen[prefix + attribute] = weight
    if include:
        for name, param in params.items():
            if _matches(name, include):
                chosen[name] = param
        unmatched = [p for p in include if not any(fnmatch.fnmatchcase(n, p) for n in params)]
        if unmatched:
            raise ConfigError(
                f"include pattern(s) {unmatched} match no parameter of the model; "
                f"parameter names look like {list(params)[:5]}"
            )
    if exclude:
        chosen = {n: p for n, p in chosen.items() if not _matches(n, exclude)}
    if keep_classifier_dense:
        classifier = classifier_parameter_name(model)
        chosen.pop(classifier, None)
    if keep_first_layer_dense and chosen:
        chosen.pop(next(iter(chosen)))
    # model order, as in named_parameters
    ordered = {n: params[n] for n in params if n in chosen}
    if not ordered:
        raise ConfigError(
            "no prunable parameter was selected: check the include/exclude patterns "
            "and module types"
        )
    return ordered
