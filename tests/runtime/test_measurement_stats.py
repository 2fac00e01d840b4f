"""Statistics of the timing windows and the warnings, on known samples (synthetic arrays and snapshots)."""
from __future__ import annotations

import time

import numpy as np
import pytest

from compressor.runtime.measurement import (
    cov_warnings,
    input_shapes,
    latency_stats,
    machine_warnings,
    measure_call,
    window_stats,
    window_warnings,
)


def test_window_stats_on_known_samples():
    samples = [1.0, 1.0, 3.0, 2.0, 2.0, 2.0, 4.0, 4.0, 5.0, 10.0]  # windows of 2: medians 1, 2.5, 2, 4, 7.5
    windows = window_stats(samples, 5)
    assert windows["count"] == 5 and windows["iterations"] == [2, 2, 2, 2, 2]
    assert windows["median_ms"] == [1.0, 2.5, 2.0, 4.0, 7.5]
    assert windows["spread"] == pytest.approx((7.5 - 1.0) / 2.5)


def test_window_stats_uneven_and_short_runs():
    windows = window_stats(list(range(1, 13)), 5)  # 12 samples: 3, 3, 2, 2, 2 in order
    assert windows["iterations"] == [3, 3, 2, 2, 2] and windows["median_ms"] == [2.0, 5.0, 7.5, 9.5, 11.5]
    short = window_stats([4.0, 4.0], 5)
    assert short["count"] == 2 and short["spread"] == 0.0
    with pytest.raises(ValueError, match="windows"):
        window_stats([1.0], 0)
    with pytest.raises(ValueError, match="no timed samples"):
        window_stats([], 5)


def test_steady_samples_have_no_spread_and_no_warning():
    windows = window_stats([2.0] * 50, 5)
    assert windows["spread"] == 0.0 and window_warnings(windows) == []


def test_a_slow_window_is_named():
    samples = [1.0] * 40 + [1.5] * 10  # the last window 50 % slower
    windows = window_stats(samples, 5)
    assert windows["median_ms"] == [1.0, 1.0, 1.0, 1.0, 1.5] and windows["spread"] == pytest.approx(0.5)
    (warning,) = window_warnings(windows)
    assert "differ by 50.0%" in warning and "1, 1, 1, 1, 1.5 ms" in warning


def test_cov_on_known_samples_and_its_warning():
    samples = np.array([9.0, 11.0] * 10)  # mean 10, std 1: CoV 10 %
    assert latency_stats(samples, batch=1, wall_s=1.0)["cov"] == pytest.approx(0.10)
    assert cov_warnings(0.10) == []  # at the threshold: no warning
    noisy = latency_stats([1.0, 1.0, 1.0, 5.0], batch=1, wall_s=1.0)["cov"]  # mean 2, std sqrt(3)
    assert noisy == pytest.approx(np.sqrt(3) / 2)
    assert "86.6%" in cov_warnings(noisy)[0]


def test_machine_busy_by_load_other_threads_and_frequency():
    quiet = {"load1": 0.5, "others_running": 0, "cpu_mhz": 3000.0}
    assert machine_warnings(quiet, quiet, threads=2, cpus=4) == []
    loaded = machine_warnings({**quiet, "load1": 2.5}, quiet, threads=2, cpus=4)  # 2 CPUs free beside ours
    assert len(loaded) == 1 and "load average 2.50" in loaded[0] and "2 CPU(s) free" in loaded[0]
    crowded = machine_warnings(quiet, {**quiet, "others_running": 3}, threads=2, cpus=4)
    assert len(crowded) == 1 and "3 thread(s) of other processes" in crowded[0]
    throttled = machine_warnings(quiet, {**quiet, "cpu_mhz": 2400.0}, threads=2, cpus=4)
    assert len(throttled) == 1 and "3000 to 2400 MHz" in throttled[0]
    assert machine_warnings(quiet, {**quiet, "cpu_mhz": 3200.0}, threads=2, cpus=4) == []  # within 10 %
    assert machine_warnings({}, {}, threads=1, cpus=2) == []  # nothing readable: nothing judged
    # the runtime's own choice of threads counts as one: on 2 CPUs a load of 1.2 leaves less than one free
    assert machine_warnings({"load1": 1.2}, {}, threads=None, cpus=2)


def test_measure_call_records_windows_shapes_machine_and_warnings():
    snapshots = iter([{"load1": 0.0, "others_running": 0}, {"load1": 0.0, "others_running": 7}])
    delays = iter([0.001] * 16 + [0.004] * 4 + [0.001] * 100)
    feed = {"image": np.zeros((2, 3, 8, 8), np.float32), "ids": np.zeros((2, 5), np.int64)}
    result = measure_call(lambda: time.sleep(next(delays)), batch=2, threads=1, warmup_s=0.0, min_iterations=20,
                          min_duration_s=0.0, windows=5, inputs=input_shapes(feed), probe=lambda: next(snapshots),
                          cov_warning=10.0)
    assert result["windows"]["count"] == 5 and result["windows"]["iterations"] == [4] * 5
    last = result["windows"]["median_ms"][-1]
    assert last >= 4.0 and last > 2 * result["windows"]["median_ms"][1]  # the slow calls were the last window's
    assert result["machine"]["after"]["others_running"] == 7
    protocol = result["protocol"]
    assert protocol["input_shapes"] == [{"name": "image", "shape": [2, 3, 8, 8], "dtype": "float32"},
                                        {"name": "ids", "shape": [2, 5], "dtype": "int64"}]
    assert (protocol["windows"], protocol["timed_iterations"], protocol["batch"], protocol["threads"]) == (5, 20, 2, 1)
    host = protocol["host"]
    assert host["cpus"] >= 1 and host["python"] and host["numpy"] == np.__version__ and "cpu_model" in host
    assert any("timing windows differ" in w for w in result["warnings"])
    assert any("7 thread(s) of other processes" in w for w in result["warnings"])
    assert not any("coefficient of variation" in w for w in result["warnings"])  # threshold raised to 1000 %


def test_window_count_out_of_bounds_is_refused_before_any_call():
    calls = []
    with pytest.raises(ValueError, match="windows"):
        measure_call(lambda: calls.append(1), batch=1, windows=0)
    assert not calls
