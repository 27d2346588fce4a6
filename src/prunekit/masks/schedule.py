"""Sparsity schedules for pruning in several rounds."""

from __future__ import annotations

from collections.abc import Sequence

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


STAGE_KINDS = ("exponential", "polynomial", "cubic", "linear", "geometric", "explicit")


def stage_sparsities(
    target: float,
    stages: int | Sequence[float],
    kind: str | None = None,
    *,
    start: float = 0.0,
    base: float | None = None,
    power: float = 3.0,
) -> list[float]:
    """Sparsity after each stage of multi-stage pruning: strictly increasing, every entry
    above ``start`` (the sparsity the weights already have), the last exactly ``target``.

    Sparsity is the fraction of prunable weights removed. With T = ``stages`` and
    t = 0 … T−1, s = ``target``, b = ``base``:

    - ``"exponential"`` (CHITA++): s_t = b + (s − b)·c·(1 − 2⁻ᵗ), c = 2^(T−1)/(2^(T−1) − 1);
      s₀ = b and most stages sit close to the target.
    - ``"polynomial"``: s_t = s + (b − s)(1 − t/(T−1))^power; ``"cubic"``: power 3. s₀ = b.
    - ``"linear"``: s_t = b + (s − b)(t+1)/T (b is the level before the first stage).
    - ``"geometric"``: density 1 − s_t = (1 − b)·((1 − s)/(1 − b))^((t+1)/T)
      (b is the level before the first stage).
    - ``"explicit"``: ``stages`` is the list itself, validated (the default kind for a list).

    ``base`` defaults to a tenth of the way from ``start`` to ``target`` for the kinds
    that start at b (exponential, polynomial, cubic), and to ``start`` for linear and
    geometric. One stage gives ``[target]``.

    Example::

        stage_sparsities(0.98, 4, "exponential", base=0.1)  # [0.1, 0.6029, 0.8543, 0.98]
    """
    target = check_sparsity(target, "target sparsity")
    start = check_sparsity(start, "start sparsity")
    if target <= start:
        raise ConfigError(
            f"target sparsity {target} must be above the sparsity the weights already have "
            f"({start}); pass a larger target or the right start"
        )
    if kind is None:
        kind = "exponential" if isinstance(stages, int) else "explicit"
    if kind not in STAGE_KINDS:
        raise ConfigError(f"unknown stage schedule {kind!r}: use one of {', '.join(STAGE_KINDS)}")
    if kind == "explicit" or not isinstance(stages, int):
        if kind != "explicit" or isinstance(stages, int):
            raise ConfigError(
                "a list of sparsities goes with kind='explicit', a number of stages with "
                f"one of {', '.join(STAGE_KINDS[:-1])}; got {kind!r} and {stages!r}"
            )
        return _check_stages([float(s) for s in stages], target, start, "the given list")
    if stages < 1:
        raise ConfigError(f"need at least one stage, got {stages}")
    if stages == 1:
        return [target]
    starts_at_base = kind in ("exponential", "polynomial", "cubic")
    if base is None:
        base = start + (target - start) / 10 if starts_at_base else start
    base = check_sparsity(base, "base sparsity")
    if not (start < base < target if starts_at_base else start <= base < target):
        raise ConfigError(
            f"base sparsity {base} must lie in ({start}, {target}) for the {kind!r} schedule "
            f"(above the current sparsity {start}, below the target)"
            if starts_at_base
            else f"base sparsity {base} must lie in [{start}, {target}) for {kind!r}"
        )
    last = stages - 1
    if kind == "exponential":
        c = 2.0**last / (2.0**last - 1.0)
        values = [base + (target - base) * c * (1.0 - 2.0**-t) for t in range(stages)]
    elif kind in ("polynomial", "cubic"):
        exponent = 3.0 if kind == "cubic" else float(power)
        if not exponent > 0:
            raise ConfigError(f"power must be positive, got {power}")
        values = [target + (base - target) * (1 - t / last) ** exponent for t in range(stages)]
    elif kind == "linear":
        values = [base + (target - base) * (t + 1) / stages for t in range(stages)]
    else:
        ratio = (1.0 - target) / (1.0 - base)
        values = [1.0 - (1.0 - base) * ratio ** ((t + 1) / stages) for t in range(stages)]
    values[-1] = target
    return _check_stages(values, target, start, f"{stages} {kind} stages")


def _check_stages(values: list[float], target: float, start: float, what: str) -> list[float]:
    """Strictly increasing, first above ``start``, last equal to ``target`` (set exactly)."""
    if not values:
        raise ConfigError("the list of stage sparsities is empty; give at least [target]")
    for value in values:
        check_sparsity(value, "stage sparsity")
    if abs(values[-1] - target) > 1e-9:
        raise ConfigError(f"{what} must end at the target {target}, got {values[-1]}")
    values = values[:-1] + [target]
    if values[0] <= start:
        raise ConfigError(
            f"{what} must start above the sparsity the weights already have ({start}); "
            f"got {values[0]}"
        )
    steps = [b - a for a, b in zip(values, values[1:], strict=False)]
    if any(step <= 0 for step in steps):
        first = next(i for i, step in enumerate(steps) if step <= 0)
        shown = ", ".join(f"{v:.6g}" for v in values[max(0, first - 1) : first + 2])
        raise ConfigError(
            f"{what} must be strictly increasing, but stages {first} and {first + 1} of "
            f"{len(values)} do not increase (… {shown} …); use fewer stages or another base"
        )
    return values
