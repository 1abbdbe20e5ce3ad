"""Timing a call, and what else ran meanwhile: call times, peak RSS, the host's load."""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

LOADED_CORES = 0.25  # other processes' average busy cores during a run above which the report warns


def time_calls(call: Callable[[], object], min_seconds: float, max_calls: int, warmup: int,
               min_calls: int = 5) -> list[float]:
    """Seconds per call after ``warmup`` calls, for at least ``min_calls`` calls and ``min_seconds``."""
    for _ in range(warmup):
        call()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < max_calls and (len(times) < min_calls or time.perf_counter() - started < min_seconds):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return times


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def cpu_seconds() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, CPU seconds of this process and its reaped children)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    busy = (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return busy, own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def host_load(start: tuple[float, float], seconds: float) -> dict[str, Any]:
    """How busy other processes kept the CPU since ``start``, on average in cores, and a warning if too busy."""
    busy, own = cpu_seconds()
    others = max(0.0, (busy - start[0]) - (own - start[1])) / max(seconds, 1e-9)
    warning = (f"the host was loaded: other processes kept {others:.2f} cores busy on average during this run; "
               "ratios within the run still compare, absolute rates are low") if others > LOADED_CORES else None
    return {"other_busy_cores": others, "warning": warning}

