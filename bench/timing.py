"""Timing for the benchmark scripts: the median of repeated calls after one untimed warm-up call
(which pays for first-use work: kernel builds, allocations, caches)."""

from __future__ import annotations

import statistics
import time


def median_seconds(fn, repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def mean_seconds(fn, calls: int, warm: bool = True) -> float:
    """Seconds per call over `calls` calls in a row (after one untimed call when `warm`)."""
    if warm:
        fn()
    t = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t) / calls
