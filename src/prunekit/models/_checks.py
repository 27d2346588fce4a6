"""Validation of factory options: each check raises ``ConfigError`` naming the option."""

from __future__ import annotations

from collections.abc import Iterable

from prunekit.errors import ConfigError


def positive_int(option: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{option} must be a positive integer, got {value!r}")
    return value


def positive_float(option: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{option} must be a positive number, got {value!r}")
    return float(value)


def one_of(option: str, value: object, choices: Iterable[object]) -> None:
    choices = list(choices)
    if value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise ConfigError(f"{option} must be one of {listed}, got {value!r}")
