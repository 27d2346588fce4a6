"""Configuration from a YAML file and command-line flags (flags override the file).

Each command has a flat dataclass of settings with documented defaults. Values are
resolved as: dataclass defaults ← YAML file ← flags given on the command line.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from prunekit.errors import ConfigError

T = TypeVar("T")


def read_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {_yaml_problem(exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of option: value")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def _yaml_problem(exc: Exception) -> str:
    """``line L, column C: problem`` from a YAML error."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is None:
        return str(problem)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    """Light type checking of YAML values against the dataclass annotation."""
    if value is None:
        return None
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        for candidate in non_none:
            try:
                return _coerce(name, value, candidate)
            except ConfigError:
                continue
        raise ConfigError(f"option {name}: {value!r} is not a valid {annotation}")
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"option {name} must be true or false, got {value!r}")
    if annotation in (int, float, str):
        if annotation is int and isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"option {name} must be an integer, got {value!r}")
        if annotation in (int, float) and isinstance(value, bool):
            raise ConfigError(f"option {name} must be a number, got {value!r}")
        try:
            return annotation(value)
        except (TypeError, ValueError):
            raise ConfigError(
                f"option {name} must be {annotation.__name__}, got {value!r}"
            ) from None
    if origin in (list, tuple):
        items = value if isinstance(value, list | tuple) else [value]
        inner = args[0] if args else Any
        return [_coerce(name, v, inner) for v in items]
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"option {name} must be a mapping, got {value!r}")
        return dict(value)
    return value


def resolve_config(cls: type[T], file_values: dict[str, Any], flag_values: dict[str, Any]) -> T:
    """Build ``cls`` from defaults, then the YAML values, then the flags."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    merged: dict[str, Any] = {}
    for source, values in (("config file", file_values), ("flags", flag_values)):
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ConfigError(
                f"unknown option(s) {unknown} in {source}; valid options: {sorted(fields)}"
            )
        for key, value in values.items():
            merged[key] = _coerce(key, value, hints[key])
    return cls(**merged)
