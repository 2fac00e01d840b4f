"""Latency measurement: a timed loop, its statistics and the protocol record (the toolchain's too).

``compress profile`` and a bundle's ``run.py --profile`` both measure through :func:`measure_call`, so a
number from the device and one from the desktop mean the same thing. The protocol is bounded
(:func:`check_protocol`) and the timed loop always ends: after ``max_duration_s`` at the latest.
"""
from __future__ import annotations

import math
import os
import platform
import time
from pathlib import Path
from typing import Mapping

import numpy as np

COV_WARNING = 0.10
MAX_WARMUP_S = 600.0
"""Longest warm-up a protocol may ask for (seconds)."""
MAX_DURATION_S = 3600.0
"""Longest minimum timed duration a protocol may ask for, and the timed loop's hard budget (seconds)."""
MAX_ITERATIONS = 10_000_000
"""Most minimum timed iterations a protocol may ask for."""
MAX_BATCH = 65536
"""Largest batch a protocol may ask for (the size of its inputs is checked separately)."""
MAX_THREADS_CAP = 1024
"""Most intra-op threads ever accepted, however many CPUs the machine has."""


def max_threads() -> int:
    """The most intra-op threads accepted here: 4 per CPU this process may use, at most ``MAX_THREADS_CAP``."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_THREADS_CAP, 4 * cpus))


_LABELS = {"batch": "batch", "threads": "threads", "warmup_s": "warmup_s", "min_iterations": "min_iterations",
           "min_duration_s": "min_duration_s"}


def check_protocol(*, batch=1, threads=None, warmup_s=0.0, min_iterations=1, min_duration_s=0.0,
                   labels: Mapping[str, str] | None = None) -> None:
    """Raise ``ValueError`` (one line naming the setting) unless every protocol value is in its bounds.

    Seconds must be finite numbers in [0, max] (NaN and infinity refused), counts whole numbers in [1, max];
    ``threads`` may be None (the runtime's choice). ``labels`` renames settings in the message (``--seconds``).
    """
    names = {**_LABELS, **(labels or {})}
    for key, value, high in (("warmup_s", warmup_s, MAX_WARMUP_S), ("min_duration_s", min_duration_s, MAX_DURATION_S)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ValueError(f"{names[key]} must be a number of seconds, got {value!r}")
        if not math.isfinite(value) or not 0 <= value <= high:
            raise ValueError(f"{names[key]} must be a finite number of seconds from 0 to {high:g}, got {value}")
    for key, value, high in (("batch", batch, MAX_BATCH), ("min_iterations", min_iterations, MAX_ITERATIONS),
                             ("threads", threads, max_threads())):
        if key == "threads" and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{names[key]} must be a whole number, got {value!r}")
        if not 1 <= value <= high:
            why = f" (4 per CPU here, at most {MAX_THREADS_CAP})" if key == "threads" else ""
            raise ValueError(f"{names[key]} must be from 1 to {high}{why}, got {value}")


def timed_loop(call, *, warmup_s=0.5, min_iterations=50, min_duration_s=3.0, max_duration_s=MAX_DURATION_S):
    """Warm up for ``warmup_s``, then time at least ``min_iterations`` calls AND ``min_duration_s`` seconds.

    The timed part stops after ``max_duration_s`` whatever the minimums (fewer samples than asked for then),
    so a loop always ends. Returns (per-call latencies in ms, timed wall seconds, warm-up call count).
    """
    check_protocol(warmup_s=warmup_s, min_iterations=min_iterations, min_duration_s=min_duration_s)
    if not (isinstance(max_duration_s, (int, float)) and math.isfinite(max_duration_s) and max_duration_s > 0):
        raise ValueError(f"max_duration_s must be a finite number of seconds above 0, got {max_duration_s!r}")
    warm_calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < warmup_s or warm_calls == 0:
        call()
        warm_calls += 1
    samples = []
    begin = time.perf_counter()
    elapsed = 0.0
    while (len(samples) < min_iterations or elapsed < min_duration_s) and (not samples or elapsed < max_duration_s):
        t0 = time.perf_counter_ns()
        call()
        samples.append((time.perf_counter_ns() - t0) / 1e6)
        elapsed = time.perf_counter() - begin
    return samples, time.perf_counter() - begin, warm_calls


def latency_stats(samples_ms, *, batch, wall_s):
    """min/median/mean/p90/p95/p99/max/std in ms, coefficient of variation and throughput (samples/s)."""
    arr = np.asarray(samples_ms, dtype=np.float64)
    mean = float(arr.mean())
    stats = {"min": float(arr.min()), "median": float(np.median(arr)), "mean": mean,
             "p90": float(np.percentile(arr, 90)), "p95": float(np.percentile(arr, 95)),
             "p99": float(np.percentile(arr, 99)), "max": float(arr.max()), "std": float(arr.std())}
    return {"latency_ms": stats, "cov": float(arr.std() / mean) if mean > 0 else 0.0,
            "throughput_fps": len(arr) * batch / wall_s if wall_s > 0 else 0.0, "iterations": len(arr)}


def host_info():
    """What the numbers were measured on."""
    return {"machine": platform.machine(), "processor": platform.processor() or _cpu_model(),
            "cpus": os.cpu_count(), "system": platform.system(), "python": platform.python_version()}


def _cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def cov_warnings(cov, cov_warning=COV_WARNING):
    """The warning (a one-item list) when the coefficient of variation ``cov`` exceeds ``cov_warning``."""
    if not cov > cov_warning:
        return []
    return [f"latency varies a lot (coefficient of variation {cov:.1%} > {cov_warning:.0%}): the machine is noisy; "
            "compare numbers from one run only"]


def measure_call(call, *, batch, threads=None, runtime="", runtime_version="", warmup_s=0.5, min_iterations=50,
                 min_duration_s=3.0, cov_warning=COV_WARNING, max_duration_s=MAX_DURATION_S):
    """Profile a no-argument ``call`` whose inputs are already bound; the result embeds its protocol.

    Raises ``ValueError`` for a protocol out of bounds (:func:`check_protocol`) before calling anything.
    """
    check_protocol(batch=batch, threads=threads, warmup_s=warmup_s, min_iterations=min_iterations,
                   min_duration_s=min_duration_s)
    samples, wall, warm_calls = timed_loop(call, warmup_s=warmup_s, min_iterations=min_iterations,
                                           min_duration_s=min_duration_s, max_duration_s=max_duration_s)
    result = latency_stats(samples, batch=batch, wall_s=wall)
    result["protocol"] = {
        "warmup_s": warmup_s, "warmup_calls": warm_calls, "min_iterations": min_iterations,
        "min_duration_s": min_duration_s, "max_duration_s": max_duration_s, "timed_s": wall, "batch": batch,
        "threads": threads,
        "timer": "time.perf_counter_ns per synchronous call", "inputs": "bound once before timing",
        "runtime": runtime, "runtime_version": runtime_version, "host": host_info(),
        "latency": "wall time of one synchronous inference, host memory in and out",
    }
    result["warnings"] = cov_warnings(result["cov"], cov_warning)
    if len(samples) < min_iterations:
        result["warnings"].append(f"stopped at the time budget of {max_duration_s:g} s after {len(samples)} of "
                                  f"{min_iterations} iterations")
    return result


def measure(backend, feed, *, batch, threads=None, **protocol):
    """Profile ``backend`` on ``feed``, bound once outside the timed loop."""
    return measure_call(backend.bind(feed), batch=batch, threads=threads, runtime=backend.runtime,
                        runtime_version=backend.version, **protocol)
