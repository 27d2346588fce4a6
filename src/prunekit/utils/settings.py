"""Typed settings: dataclass fields that carry their own help text.

Every settings dataclass (a pipeline's config, a one-shot method's settings) declares
its fields with :func:`setting`, so that the command line and YAML files are generated
from one place and the defaults are written once.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any


def setting(default: Any, help: str, **extra: Any) -> Any:  # noqa: A002 - reads best
    """A dataclass field with ``default`` and ``metadata["help"]`` (plus ``extra``, e.g.
    ``choices``). Mutable defaults (lists, dicts, dataclass instances) are copied."""
    metadata = {"help": help, **extra}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    if hasattr(default, "__dataclass_fields__") and not isinstance(default, type):
        cls = type(default)
        return field(default_factory=cls, metadata=metadata)
    return field(default=default, metadata=metadata)
