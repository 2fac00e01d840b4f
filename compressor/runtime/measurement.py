"""Latency measurement: a timed loop, its statistics and the protocol record (the toolchain's too).

``compress profile`` and a bundle's ``run.py --profile`` both measure through :func:`measure_call`, so a
number from the device and one from the desktop mean the same thing.
"""
from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np

COV_WARNING = 0.10


def timed_loop(call, *, warmup_s=0.5, min_iterations=50, min_duration_s=3.0):
    """Warm up for ``warmup_s``, then time at least ``min_iterations`` calls AND ``min_duration_s`` seconds.

    Returns (per-call latencies in ms, timed wall seconds, warm-up call count).
    """
    warm_calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < warmup_s or warm_calls == 0:
        call()
        warm_calls += 1
    samples = []
    begin = time.perf_counter()
    while len(samples) < min_iterations or time.perf_counter() - begin < min_duration_s:
        t0 = time.perf_counter_ns()
        call()
        samples.append((time.perf_counter_ns() - t0) / 1e6)
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
                 min_duration_s=3.0, cov_warning=COV_WARNING):
    """Profile a no-argument ``call`` whose inputs are already bound; the result embeds its protocol."""
    samples, wall, warm_calls = timed_loop(call, warmup_s=warmup_s, min_iterations=min_iterations,
                                           min_duration_s=min_duration_s)
    result = latency_stats(samples, batch=batch, wall_s=wall)
    result["protocol"] = {
        "warmup_s": warmup_s, "warmup_calls": warm_calls, "min_iterations": min_iterations,
        "min_duration_s": min_duration_s, "timed_s": wall, "batch": batch, "threads": threads,
        "timer": "time.perf_counter_ns per synchronous call", "inputs": "bound once before timing",
        "runtime": runtime, "runtime_version": runtime_version, "host": host_info(),
        "latency": "wall time of one synchronous inference, host memory in and out",
    }
    result["warnings"] = cov_warnings(result["cov"], cov_warning)
    return result


def measure(backend, feed, *, batch, threads=None, **protocol):
    """Profile ``backend`` on ``feed``, bound once outside the timed loop."""
    return measure_call(backend.bind(feed), batch=batch, threads=threads, runtime=backend.runtime,
                        runtime_version=backend.version, **protocol)
