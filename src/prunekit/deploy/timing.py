"""Wall-clock timing of a call: warmup, then the median of repeats."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_seconds(call: Callable[[], object], repeats: int = 5, warmup: int = 2) -> float:
    """Median wall-clock seconds of ``call()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(max(repeats, 1)):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)
