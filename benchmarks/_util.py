"""Shared helpers for the benchmark scripts: medians of repeated timed loops."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def per_call_ns(fn: Callable[[], object], *, number: int, repeat: int = 7) -> float:
    """Median over ``repeat`` runs of the mean cost of ``fn()`` in nanoseconds."""
    runs = []
    for _ in range(repeat):
        start = time.perf_counter_ns()
        for _ in range(number):
            fn()
        runs.append((time.perf_counter_ns() - start) / number)
    return statistics.median(runs)


def per_item_ns(batch: Callable[[], object], *, items: int, repeat: int = 7) -> float:
    """Median over ``repeat`` runs of ``batch()`` (which handles ``items``), per item."""
    runs = []
    for _ in range(repeat):
        start = time.perf_counter_ns()
        batch()
        runs.append((time.perf_counter_ns() - start) / items)
    return statistics.median(runs)
