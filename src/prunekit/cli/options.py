"""Command-line options generated from a config dataclass, so flags and YAML keys agree.

Each dataclass field becomes ``--field-name``; its ``metadata["help"]`` is the help
text. A field whose type is itself a settings dataclass (a *group*, e.g. ``cbs``) gives
one flag per inner field, ``--group-field`` (``--cbs-rmp-trials``), stored as
``group.field``. Booleans get ``--x/--no-x``, lists take several values, dicts take a YAML
mapping such as ``'{width: 2}'``. A field with ``metadata["positional"]`` is a
positional argument instead (optional on the command line, so a YAML file may give it).
Defaults are suppressed so that only the flags a user typed override the YAML file.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any

import yaml


def _base_type(annotation: Any) -> Any:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return _base_type(args[0]) if len(args) == 1 else annotation
    return annotation


def _yaml_mapping(text: str) -> dict:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise argparse.ArgumentTypeError(f"not a YAML mapping: {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a mapping like '{{width: 2}}', got {text!r}")
    return value


def is_group(annotation: Any) -> bool:
    """Whether a field's type is a nested settings dataclass."""
    return isinstance(annotation, type) and dataclasses.is_dataclass(annotation)


def add_config_options(parser: argparse.ArgumentParser, cls: type, prefix: str = "") -> None:
    hints = typing.get_type_hints(cls)
    title = "options (also settable as keys of a YAML --config file)"
    if prefix:
        title = f"{prefix} settings (YAML: a mapping under the key {prefix!r})"
    group = parser.add_argument_group(title)
    for field in dataclasses.fields(cls):
        annotation = _base_type(hints[field.name])
        if is_group(annotation):
            add_config_options(parser, annotation, prefix=field.name)
            continue
        flag = "--" + (f"{prefix}_" if prefix else "") + field.name
        flag = flag.replace("_", "-")
        dest = f"{prefix}.{field.name}" if prefix else field.name
        default = field.default if field.default is not dataclasses.MISSING else None
        if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = field.default_factory()  # type: ignore[misc]
        help_text = field.metadata.get("help", "")
        help_text = f"{help_text} (default: {default})" if help_text else f"default: {default}"
        help_text = help_text.replace("%", "%%")
        if field.metadata.get("positional"):
            parser.add_argument(
                field.name,
                nargs="?",
                default=argparse.SUPPRESS,
                help=help_text,
                metavar=field.name.upper(),
            )
            continue
        kwargs: dict[str, Any] = {"dest": dest, "default": argparse.SUPPRESS}
        origin = typing.get_origin(annotation)
        if annotation is bool:
            group.add_argument(
                flag, action=argparse.BooleanOptionalAction, help=help_text, **kwargs
            )
            continue
        if origin in (list, tuple):
            inner = typing.get_args(annotation)[0] if typing.get_args(annotation) else str
            group.add_argument(flag, nargs="+", type=_base_type(inner), help=help_text, **kwargs)
            continue
        if origin is dict or annotation is dict:
            group.add_argument(flag, type=_yaml_mapping, help=help_text, metavar="YAML", **kwargs)
            continue
        choices = field.metadata.get("choices")
        arg_type = annotation if annotation in (int, float, str) else str
        group.add_argument(flag, type=arg_type, choices=choices, help=help_text, **kwargs)
