"""Sparsity schedules for pruning in several rounds."""

from __future__ import annotations

from prunekit.errors import ConfigError


def check_sparsity(sparsity: float, what: str = "sparsity") -> float:
    """Validate a sparsity (fraction of prunable weights removed) in [0, 1)."""
    try:
        value = float(sparsity)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number in [0, 1), got {sparsity!r}") from None
    if not 0.0 <= value < 1.0:
        raise ConfigError(
            f"{what} must be in [0, 1) (the fraction of prunable weights removed), got {sparsity!r}"
        )
    return value


def exponential_schedule(sparsity: float, rounds: int) -> list[float]:
    """Sparsity after each of ``rounds`` rounds: density after round j is (1−s)^(j/r).

    The last entry equals ``sparsity``. One round gives ``[sparsity]``.
    """
    sparsity = check_sparsity(sparsity)
    if rounds < 1:
        raise ConfigError(f"rounds must be >= 1, got {rounds}")
    density = 1.0 - sparsity
    return [1.0 - density ** ((j + 1) / rounds) for j in range(rounds)]
