"""A name → factory registry for models, in the manner of timm.

A factory is a plain function that takes ``num_classes`` and keyword options and
returns an ``nn.Module``::

    @register_model("mlpnet")
    def mlpnet(num_classes: int = 10) -> nn.Module: ...

    model = create_model("mlpnet", num_classes=10)
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable

from torch import nn

from prunekit.errors import ConfigError

ModelFactory = Callable[..., nn.Module]

_REGISTRY: dict[str, ModelFactory] = {}


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator: register ``factory`` under ``name`` (the function itself is returned unchanged).

    Registering two factories under the same name is a programming error (``ValueError``).
    """

    def decorator(factory: ModelFactory) -> ModelFactory:
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            raise ValueError(f"a model named {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return decorator


def list_models() -> list[str]:
    """The registered model names, sorted."""
    return sorted(_REGISTRY)


def get_model_factory(name: str) -> ModelFactory:
    """The factory registered under ``name``; ``ConfigError`` listing the valid names if none."""
    try:
        return _REGISTRY[name]
    except KeyError:
        names = list_models()
        close = difflib.get_close_matches(str(name).lower(), names, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"unknown model {name!r}.{hint} Valid names: {', '.join(names)}."
        ) from None


def create_model(name: str, num_classes: int = 10, **kwargs: object) -> nn.Module:
    """Build the model registered under ``name`` with ``num_classes`` outputs.

    ``kwargs`` are passed to the factory. An unknown name, an option the factory does
    not take, or an invalid value raises ``ConfigError``.

    >>> model = create_model("resnet20", num_classes=10, shortcut="pad")
    """
    factory = get_model_factory(name)
    signature = inspect.signature(factory)
    try:
        signature.bind(num_classes=num_classes, **kwargs)
    except TypeError:
        accepted = [p for p in signature.parameters if p != "num_classes"]
        unknown = sorted(set(kwargs) - set(accepted))
        raise ConfigError(
            f"model {name!r} got unknown option(s) {', '.join(unknown) or '(none)'}; "
            f"it accepts: {', '.join(accepted) or 'no options'} (and num_classes)."
        ) from None
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    return factory(num_classes=num_classes, **kwargs)
