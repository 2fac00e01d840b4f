import time

import numpy as np
import pytest

from compressor.runtime.measurement import latency_stats, measure_call, timed_loop


def test_latency_stats_match_numpy():
    samples = [1.0, 2.0, 3.0, 4.0, 10.0]
    result = latency_stats(samples, batch=2, wall_s=0.5)
    lat = result["latency_ms"]
    assert (lat["min"], lat["median"], lat["max"]) == (1.0, 3.0, 10.0)
    assert lat["mean"] == pytest.approx(4.0)
    assert lat["p90"] == pytest.approx(np.percentile(samples, 90))
    assert lat["std"] == pytest.approx(np.std(samples))
    assert result["cov"] == pytest.approx(np.std(samples) / 4.0)
    assert result["throughput_fps"] == pytest.approx(5 * 2 / 0.5)


def test_loop_runs_at_least_n_iterations_and_t_seconds():
    calls = []
    samples, wall, warm = timed_loop(lambda: calls.append(1), warmup_s=0.0, min_iterations=25, min_duration_s=0.0)
    assert len(samples) == 25 and warm == 1 and len(calls) == 26
    samples, wall, _ = timed_loop(lambda: time.sleep(0.002), warmup_s=0.01, min_iterations=3, min_duration_s=0.1)
    assert wall >= 0.1 and len(samples) > 3
    assert min(samples) >= 2.0  # each call really slept 2 ms


def test_protocol_is_recorded_and_noise_warned():
    delays = iter([0.001, 0.02] * 1000)
    result = measure_call(lambda: time.sleep(next(delays)), batch=1, warmup_s=0.0, min_iterations=10,
                          min_duration_s=0.0, cov_warning=0.05)
    assert result["protocol"]["min_iterations"] == 10
    assert result["protocol"]["inputs"] == "bound once before timing"
    assert result["warnings"] and "coefficient of variation" in result["warnings"][0]
