"""Latency measurement: a timed loop, its statistics and the protocol record (the toolchain's too).

``compress profile`` and a bundle's ``run.py --profile`` both measure through :func:`measure_call`, so a
number from the device and one from the desktop mean the same thing. The protocol is bounded
(:func:`check_protocol`) and the timed loop always ends: after ``max_duration_s`` at the latest. The timed
samples are also judged in consecutive windows (:func:`window_stats`); warnings name a noisy run (high
coefficient of variation, windows that disagree) and a busy machine (:func:`machine_warnings`).
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
"""Coefficient of variation above which a profile warns."""
SPREAD_WARNING = 0.10
"""Relative spread of the window medians above which a profile warns."""
FREQ_WARNING = 0.10
"""Relative change of the mean CPU frequency between the start and end of timing above which a profile warns."""
WINDOWS = 5
"""Consecutive windows the timed samples are cut into (each window's median, and their spread)."""
MAX_WINDOWS = 1000
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
    return max(1, min(MAX_THREADS_CAP, 4 * usable_cpus()))


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


def window_stats(samples_ms, windows=WINDOWS):
    """The timed samples cut, in order, into ``windows`` consecutive windows of (nearly) equal count.

    Returns ``{"count", "iterations": [per window], "median_ms": [per window], "spread"}`` where ``spread`` is
    (largest - smallest window median) / median of the window medians: 0 when the machine kept one speed.
    Fewer samples than windows give one window per sample.
    """
    if isinstance(windows, bool) or not isinstance(windows, (int, np.integer)) or not 1 <= windows <= MAX_WINDOWS:
        raise ValueError(f"windows must be a whole number from 1 to {MAX_WINDOWS}, got {windows!r}")
    arr = np.asarray(samples_ms, dtype=np.float64)
    if arr.size == 0:
        raise ValueError("no timed samples")
    parts = np.array_split(arr, min(int(windows), arr.size))
    medians = [float(np.median(part)) for part in parts]
    centre = float(np.median(medians))
    spread = (max(medians) - min(medians)) / centre if centre > 0 else 0.0
    return {"count": len(parts), "iterations": [int(part.size) for part in parts], "median_ms": medians,
            "spread": float(spread)}


def host_info():
    """What the numbers were measured on: CPU model, logical CPUs, OS and the Python/numpy versions."""
    model = cpu_model()
    return {"machine": platform.machine(), "processor": model or platform.processor(), "cpu_model": model,
            "cpus": os.cpu_count(), "usable_cpus": usable_cpus(), "system": platform.system(),
            "release": platform.release(), "python": platform.python_version(), "numpy": np.__version__}


def usable_cpus():
    """CPUs this process may run on (its affinity), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cpu_model(cpuinfo="/proc/cpuinfo"):
    """The CPU's model name from ``cpuinfo`` (x86 ``model name``, Arm ``Model``/``Hardware``), else what
    ``platform`` knows (often '' on Linux)."""
    found = {}
    try:
        for line in Path(cpuinfo).read_text(errors="replace").splitlines():
            key, sep, value = line.partition(":")
            if sep and value.strip():
                found.setdefault(key.strip().lower(), value.strip())
    except OSError:
        pass
    for key in ("model name", "model", "hardware", "cpu model", "processor"):
        value = found.get(key, "")
        if value and not value.isdigit():
            return value
    return platform.processor()


def cov_warnings(cov, cov_warning=COV_WARNING):
    """The warning (a one-item list) when the coefficient of variation ``cov`` exceeds ``cov_warning``."""
    if not cov > cov_warning:
        return []
    return [f"latency varies a lot (coefficient of variation {cov:.1%} > {cov_warning:.0%}): the machine is noisy; "
            "compare numbers from one run only"]


def window_warnings(windows, spread_warning=SPREAD_WARNING):
    """The warning when the window medians of :func:`window_stats` differ by more than ``spread_warning``."""
    if windows["count"] < 2 or not windows["spread"] > spread_warning:
        return []
    medians = ", ".join(f"{m:.3g}" for m in windows["median_ms"])
    return [f"the medians of the {windows['count']} timing windows differ by {windows['spread']:.1%} "
            f"(> {spread_warning:.0%}; {medians} ms): the machine's speed changed during the run"]


def machine_warnings(start, end, *, threads=None, cpus=None, freq_warning=FREQ_WARNING):
    """Warnings from two machine snapshots taken before and after timing (see ``compressor.core.machine.snapshot``).

    A snapshot is a dict with any of ``load1`` (1-minute load average), ``others_running`` (runnable threads
    of other processes) and ``cpu_mhz`` (mean current frequency of the usable CPUs); a missing key is not
    judged. The machine is busy when the load average before timing, or the other runnable threads before or
    after, exceed the CPUs left beside our ``threads`` (one when the runtime chose); the frequency varies
    when it moved by more than ``freq_warning`` between the two snapshots.
    """
    start, end = start or {}, end or {}
    cpus = cpus or usable_cpus()
    free = max(cpus - (threads or 1), 0)
    warnings = []
    load = start.get("load1")
    if load is not None and load > free:
        warnings.append(f"the machine was busy: 1-minute load average {load:.2f} before timing, above the "
                        f"{free} CPU(s) free beside our {threads or 1} thread(s) of {cpus}; latency is inflated")
    others = [s.get("others_running") for s in (start, end) if s.get("others_running") is not None]
    if others and max(others) > free:
        warnings.append(f"{max(others)} thread(s) of other processes were running while timing, above the "
                        f"{free} CPU(s) free beside ours: latency is inflated")
    before, after = start.get("cpu_mhz"), end.get("cpu_mhz")
    if before and after and abs(after - before) / before > freq_warning:
        warnings.append(f"the CPU frequency moved from {before:.0f} to {after:.0f} MHz during timing "
                        f"(> {freq_warning:.0%}): power saving or turbo changed the speed")
    return warnings


def input_shapes(feed):
    """``[{"name", "shape", "dtype"}]`` of the arrays of a feed, as they are timed."""
    return [{"name": str(name), "shape": [int(d) for d in np.shape(value)], "dtype": str(np.asarray(value).dtype)}
            for name, value in feed.items()]


def measure_call(call, *, batch, threads=None, runtime="", runtime_version="", warmup_s=0.5, min_iterations=50,
                 min_duration_s=3.0, cov_warning=COV_WARNING, max_duration_s=MAX_DURATION_S, windows=WINDOWS,
                 inputs=None, probe=None):
    """Profile a no-argument ``call`` whose inputs are already bound; the result embeds its protocol.

    The timed samples are also cut into ``windows`` consecutive windows (their medians and spread: see
    :func:`window_stats`). ``inputs`` records the shapes timed (:func:`input_shapes`); ``probe()``, when given,
    returns a machine snapshot taken before warm-up and after timing (``compressor.core.machine.snapshot``), kept under
    ``machine`` and judged by :func:`machine_warnings`. Raises ``ValueError`` for a protocol out of bounds
    (:func:`check_protocol`) before calling anything.
    """
    check_protocol(batch=batch, threads=threads, warmup_s=warmup_s, min_iterations=min_iterations,
                   min_duration_s=min_duration_s)
    window_stats([1.0], windows)  # the window count is checked before any call too
    before = probe() if probe else None
    samples, wall, warm_calls = timed_loop(call, warmup_s=warmup_s, min_iterations=min_iterations,
                                           min_duration_s=min_duration_s, max_duration_s=max_duration_s)
    after = probe() if probe else None
    result = latency_stats(samples, batch=batch, wall_s=wall)
    result["windows"] = window_stats(samples, windows)
    result["protocol"] = {
        "warmup_s": warmup_s, "warmup_calls": warm_calls, "min_iterations": min_iterations,
        "min_duration_s": min_duration_s, "max_duration_s": max_duration_s, "timed_s": wall,
        "timed_iterations": len(samples), "windows": result["windows"]["count"], "batch": batch,
        "threads": threads, "input_shapes": list(inputs or []),
        "timer": "time.perf_counter_ns per synchronous call", "inputs": "bound once before timing",
        "runtime": runtime, "runtime_version": runtime_version, "host": host_info(),
        "latency": "wall time of one synchronous inference, host memory in and out",
    }
    result["warnings"] = cov_warnings(result["cov"], cov_warning) + window_warnings(result["windows"])
    if probe:
        result["machine"] = {"before": before, "after": after}
        result["warnings"] += machine_warnings(before, after, threads=threads)
    if len(samples) < min_iterations:
        result["warnings"].append(f"stopped at the time budget of {max_duration_s:g} s after {len(samples)} of "
                                  f"{min_iterations} iterations")
    return result


def measure(backend, feed, *, batch, threads=None, **protocol):
    """Profile ``backend`` on ``feed``, bound once outside the timed loop (the shapes timed are recorded)."""
    protocol.setdefault("inputs", input_shapes(feed))
    return measure_call(backend.bind(feed), batch=batch, threads=threads, runtime=backend.runtime,
                        runtime_version=backend.version, **protocol)
