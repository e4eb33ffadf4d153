"""Timing helpers: wall-clock throughput, latency percentiles, peak RSS."""

from __future__ import annotations

import os
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


def cpu_seconds() -> tuple[float, float]:
    """(CPU seconds of this process, of the local PostgreSQL server's processes) so far.

    The server's share is every live ``postgres`` process plus what the postmaster has
    collected from the ones that exited (its ``cutime``/``cstime``): a connection closed
    during a sample still counts. 0.0 where /proc is missing or no server runs here.
    """
    return time.process_time(), _postgres_cpu_seconds()


def _postgres_cpu_seconds() -> float:
    ticks = 0
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
                text = stat.read()
        except OSError:
            continue  # exited meanwhile: its parent has collected its time
        name, fields = text[text.index("(") + 1 : text.rindex(")")], text.rsplit(")", 1)[1]
        if name != "postgres":
            continue
        values = fields.split()  # values[0] is field 3 (state) of proc(5)
        ticks += int(values[11]) + int(values[12])  # utime, stime
        if values[1] == "1" or _parent_name(values[1]) != "postgres":  # the postmaster
            ticks += int(values[13]) + int(values[14])  # cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def _parent_name(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/comm", encoding="ascii") as comm:
            return comm.read().strip()
    except OSError:
        return ""
