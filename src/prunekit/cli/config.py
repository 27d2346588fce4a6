"""Configuration from a YAML file and command-line flags (flags override the file).

Each command has a dataclass of settings with documented defaults; a field whose type
is a settings dataclass is a *group* (``cbs``, ``fisher``, ``update``), written in YAML
as a mapping (``cbs: {rmp_trials: 10}``) or with the flag's spelling
(``cbs_rmp_trials: 10``), and on the command line as ``--cbs-rmp-trials 10``. Values
are resolved as: dataclass defaults ← YAML file ← flags given on the command line.
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


def _group_type(annotation: Any) -> type | None:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        return annotation
    return None


def _flatten(values: dict[str, Any], groups: dict[str, type], source: str) -> dict[str, Any]:
    """Group values as ``group.field`` keys, whether given as a nested mapping, as
    ``group_field`` (the flag's spelling) or already as ``group.field``."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        key = str(key).replace("-", "_")
        if key in groups:
            if not isinstance(value, dict):
                raise ConfigError(
                    f"option {key} in {source} must be a mapping of its settings, "
                    f"e.g. {key}: {{...}}; got {value!r}"
                )
            for inner, inner_value in value.items():
                flat[f"{key}.{str(inner).replace('-', '_')}"] = inner_value
            continue
        group = next(
            (
                g
                for g in groups
                if key.startswith(g + "_")
                and key[len(g) + 1 :] in {f.name for f in dataclasses.fields(groups[g])}
            ),
            None,
        )
        flat[f"{group}.{key[len(group) + 1 :]}" if group else key] = value
    return flat


def resolve_config(cls: type[T], file_values: dict[str, Any], flag_values: dict[str, Any]) -> T:
    """Build ``cls`` from defaults, then the YAML values, then the flags."""
    hints = typing.get_type_hints(cls)
    groups = {
        f.name: g
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if (g := _group_type(hints[f.name])) is not None
    }
    valid: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in groups:
            inner_hints = typing.get_type_hints(groups[f.name])
            for inner in dataclasses.fields(groups[f.name]):
                valid[f"{f.name}.{inner.name}"] = inner_hints[inner.name]
        else:
            valid[f.name] = hints[f.name]
    merged: dict[str, Any] = {}
    for source, values in (("config file", file_values), ("flags", flag_values)):
        values = _flatten(values, groups, source)
        unknown = sorted(set(values) - set(valid))
        if unknown:
            names = sorted(k.replace(".", "_") for k in valid)
            raise ConfigError(
                f"unknown option(s) {[k.replace('.', '_') for k in unknown]} in {source}; "
                f"valid options: {names}"
            )
        for key, value in values.items():
            merged[key] = _coerce(key.replace(".", "_"), value, valid[key])
    top = {k: v for k, v in merged.items() if "." not in k}
    for name, group in groups.items():
        inner = {k.split(".", 1)[1]: v for k, v in merged.items() if k.startswith(name + ".")}
        top[name] = group(**inner)
    return cls(**top)
