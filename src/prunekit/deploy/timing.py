"""Wall-clock timing of calls that compete: warmup, alternating calls, medians."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence


def median_times(
    calls: Sequence[Callable[[], object]],
    repeats: int = 5,
    warmup: int = 2,
    min_seconds: float = 0.2,
    max_repeats: int = 200,
) -> list[float]:
    """Median wall-clock seconds of each call, the calls timed in turn.

    After ``warmup`` untimed rounds, at least ``repeats`` rounds are timed, more for
    fast calls (until about ``min_seconds`` were spent, at most ``max_repeats``), so
    that a median is not decided by a few stalls of a busy machine. Alternating the
    calls makes drift from other processes hit them alike.
    """
    for _ in range(warmup):
        for call in calls:
            call()
    times: list[list[float]] = [[] for _ in calls]
    spent, rounds = 0.0, 0
    while rounds < max(repeats, 1) or (spent < min_seconds and rounds < max_repeats):
        for call, bucket in zip(calls, times, strict=True):
            started = time.perf_counter()
            call()
            bucket.append(time.perf_counter() - started)
            spent += bucket[-1]
        rounds += 1
    return [statistics.median(bucket) for bucket in times]
