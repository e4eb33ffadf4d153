"""Timing helpers: wall-clock throughput, latency percentiles, peak RSS."""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any


def throughput(count: int, work: Callable[[], Any]) -> float:
    """Items per second for one run of ``work`` over ``count`` items."""
    start = time.perf_counter()
    work()
    return count / (time.perf_counter() - start)


def latencies_ms(calls: Sequence[Callable[[], Any]]) -> list[float]:
    """The duration of each call, in milliseconds, after one warm-up call."""
    if calls:
        calls[0]()
    out = []
    for call in calls:
        start = time.perf_counter()
        call()
        out.append((time.perf_counter() - start) * 1000)
    return out


def percentile(values: Sequence[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def median_seconds(work: Callable[[], Any], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB.

    ``VmHWM`` from /proc is used where it exists: ``ru_maxrss`` of a process started by
    fork+exec can report the parent's size at the time of the fork.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
