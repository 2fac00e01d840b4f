import os
import time

import numpy as np
import pytest

from compressor.runtime.measurement import (
    MAX_BATCH,
    MAX_DURATION_S,
    MAX_ITERATIONS,
    MAX_THREADS_CAP,
    MAX_WARMUP_S,
    check_protocol,
    latency_stats,
    max_threads,
    measure_call,
    timed_loop,
)


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


# ---------------------------------------------------------------- bounds: every protocol ends, NaN and inf refused
@pytest.mark.parametrize("settings, needle", [
    ({"min_duration_s": float("inf")}, "min_duration_s"),
    ({"min_duration_s": 1e308}, "min_duration_s"),
    ({"min_duration_s": float("nan")}, "min_duration_s"),
    ({"min_duration_s": -1.0}, "min_duration_s"),
    ({"warmup_s": float("inf")}, "warmup_s"),
    ({"warmup_s": float("nan")}, "warmup_s"),
    ({"min_iterations": 10**12}, "min_iterations"),
    ({"min_iterations": 0}, "min_iterations"),
    ({"min_iterations": 2.5}, "min_iterations"),
    ({"threads": 100_000}, "threads"),
    ({"threads": -1}, "threads"),
    ({"batch": 0}, "batch"),
])
def test_protocol_out_of_bounds_is_refused_before_any_call(settings, needle):
    calls = []
    with pytest.raises(ValueError, match=needle) as caught:
        measure_call(lambda: calls.append(1), **{"batch": 1, **settings})
    assert not calls and "\n" not in str(caught.value)


def test_check_protocol_names_settings_as_the_caller_spells_them():
    with pytest.raises(ValueError, match="^--seconds must be a finite number of seconds from 0 to 3600, got inf$"):
        check_protocol(min_duration_s=float("inf"), labels={"min_duration_s": "--seconds"})
    with pytest.raises(ValueError, match=rf"^--threads must be from 1 to {max_threads()} "):
        check_protocol(threads=max_threads() + 1, labels={"threads": "--threads"})
    check_protocol(batch=MAX_BATCH, threads=max_threads(), warmup_s=MAX_WARMUP_S, min_iterations=MAX_ITERATIONS,
                   min_duration_s=MAX_DURATION_S)  # the bounds themselves are allowed


def test_max_threads_is_four_per_cpu_within_the_cap():
    assert 1 <= max_threads() <= MAX_THREADS_CAP
    assert max_threads() == min(MAX_THREADS_CAP, 4 * len(os.sched_getaffinity(0)))


def test_timed_loop_stops_at_its_budget_and_says_so():
    start = time.perf_counter()
    result = measure_call(lambda: time.sleep(0.01), batch=1, warmup_s=0.0, min_iterations=MAX_ITERATIONS,
                          min_duration_s=0.0, max_duration_s=0.2)
    assert time.perf_counter() - start < 2.0
    assert 1 <= result["iterations"] < MAX_ITERATIONS and result["protocol"]["max_duration_s"] == 0.2
    assert any(f"after {result['iterations']} of {MAX_ITERATIONS} iterations" in w for w in result["warnings"])


def test_timed_loop_budget_must_be_finite():
    for budget in (float("inf"), float("nan"), 0.0):
        with pytest.raises(ValueError, match="max_duration_s"):
            timed_loop(lambda: None, warmup_s=0.0, min_iterations=1, min_duration_s=0.0, max_duration_s=budget)


def test_profile_options_refuse_out_of_bounds_in_one_line():
    from compressor.core.errors import CompressError
    from compressor.targets.profile import ProfileOptions, ProfileOptionsError

    for settings in ({"min_duration_s": float("nan")}, {"warmup_s": float("inf")}, {"threads": 0},
                     {"min_iterations": 10**12}, {"batch": 10**9}):
        with pytest.raises(ProfileOptionsError) as caught:
            ProfileOptions(**settings)
        assert isinstance(caught.value, CompressError) and str(caught.value).startswith("profiling: ")
    assert ProfileOptions(min_duration_s=0, warmup_s=0).min_duration_s == 0  # ints are seconds too


def test_profile_refuses_a_feed_too_big_to_allocate():
    import torch

    from compressor.core.errors import InputSpecError
    from compressor.core.tensor_spec import TensorSpec
    from compressor.targets.profile import (
        MAX_FEED_BYTES,
        ProfileOptions,
        feed_bytes,
        profile_runner,
    )
    from compressor.targets.torch_runner import TorchRunner

    specs = [TensorSpec.parse("left:Nx3x4096x4096:float32"), TensorSpec.parse("right:Nx3x4096x4096:float32")]
    assert feed_bytes(specs, 16) == 2 * 16 * 3 * 4096 * 4096 * 4 > MAX_FEED_BYTES  # 3 GiB each, 6 GiB together
    runner = TorchRunner(torch.nn.Identity(), specs, ["out"])
    with pytest.raises(InputSpecError, match="would take 6.0 GiB"):
        profile_runner(runner, ProfileOptions(batch=16, warmup_s=0, min_iterations=1, min_duration_s=0))


# ---------------------------------------------------------------- shapes timed: chosen, validated, recorded
def _specs(*texts):
    from compressor.core.tensor_spec import TensorSpec

    return [TensorSpec.parse(text) for text in texts]


def test_timed_specs_choose_dynamic_axes_and_share_symbols():
    from compressor.targets.profile import parse_shapes, timed_specs

    specs = _specs("image:Nx3xH=32xW=32", "mask:Nx1xHxW")
    fixed, batch = timed_specs(specs, parse_shapes(["image=2x3x256x128"]))
    assert batch == 2 and [s.shape for s in fixed] == [(2, 3, 256, 128), (2, 1, 256, 128)]
    fixed, batch = timed_specs(specs, None, 3)  # no shape: the batch and the example sizes
    assert batch == 3 and [s.shape for s in fixed] == [(3, 3, 32, 32), (3, 1, 32, 32)]
    assert timed_specs(_specs("x:1x4"), None, None)[1] == 1  # a fixed batch is the batch


@pytest.mark.parametrize("shapes, batch, needle", [
    (["img=1x3x8x8"], None, "has no input 'img' (did you mean 'image'?)"),
    (["image=1x3x8"], None, "input 'image' has rank 4 (Nx3xHxW)"),
    (["image=1x4x8x8"], None, "axis 1 of input 'image' is fixed at 3"),
    (["image=2x3x8x8"], 1, "--shape gives batch 2 (axis 0) but --batch is 1"),
    (["image=1x3x8x8", "mask=1x1x9x8"], None, "H is 9 here but 8 in input 'image'"),
    (["image=1x3x8x8", "image=1x3x8x8"], None, "gives input 'image' twice"),
    (["image:1x3x8x8"], None, "is not NAME=SIZExSIZE"),
    (["image=1x3x0x8"], None, "is not NAME=SIZExSIZE"),
    (["image=1x3x99999999999x8"], None, "is not NAME=SIZExSIZE"),
    (["image=1x3x65536x65536"], None, "one input is at most 4 GiB"),
])
def test_bad_shapes_are_one_line_errors(shapes, batch, needle):
    from compressor.core.errors import InputSpecError
    from compressor.targets.profile import parse_shapes, timed_specs

    with pytest.raises(InputSpecError) as caught:
        timed_specs(_specs("image:Nx3xH=32xW=32", "mask:Nx1xHxW"), parse_shapes(shapes), batch)
    assert needle in str(caught.value) and "\n" not in str(caught.value)


def test_a_symbol_without_example_needs_a_shape():
    from compressor.core.errors import InputSpecError
    from compressor.targets.profile import timed_specs

    with pytest.raises(InputSpecError, match="choose one with --shape tokens="):
        timed_specs(_specs("tokens:NxT:int64:0..10"), None, 1)
    assert timed_specs(_specs("tokens:NxT:int64:0..10"), {"tokens": (1, 7)})[0][0].shape == (1, 7)


def test_cli_profile_times_the_chosen_shape_and_records_the_protocol(cli, exported, tmp_path):
    import json

    artifact = exported["tiny_convnet"]
    result = cli("profile", artifact.sidecar, "--json", "--shape", "image=2x3x48x40", "--duration", "0",
                 "--iterations", "10", "--warmup", "0", "--threads", "1", "--windows", "2")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    protocol = data["protocol"]
    assert protocol["input_shapes"] == [{"name": "image", "shape": [2, 3, 48, 40], "dtype": "float32"}]
    assert protocol["batch"] == 2 and protocol["threads"] == 1 and protocol["windows"] == 2
    assert protocol["runtime"].startswith("onnx") and protocol["runtime_version"]  # ONNX Runtime's version
    assert data["windows"]["iterations"] == [5, 5] and data["size"]["bytes"] == artifact.path.stat().st_size
    assert "machine" in data and data["isolated"] is False
    assert {"min", "median", "mean", "p90", "p95", "p99", "max", "std"} == set(data["latency_ms"])
    for warning in data["warnings"]:  # every warning is also on stderr
        assert f"warning: {warning}" in result.err
    text = cli("profile", artifact.sidecar, "--duration", "0", "--iterations", "5", "--warmup", "0")
    assert text.code == 0 and "timed image 1x3x32x32 float32" in text.out and "window medians" in text.out


def test_cli_profile_refuses_a_bad_shape_in_one_line(cli, exported):
    from tests.support import assert_one_line_error

    artifact = exported["tiny_convnet"].sidecar
    assert_one_line_error(cli("profile", artifact, "--shape", "image=1x4x32x32"), "axis 1 of input 'image' is fixed")
    assert_one_line_error(cli("profile", artifact, "--shape", "nope=1x3x32x32"), "has no input 'nope'")
    assert_one_line_error(cli("profile", artifact, "--shape", "image=2x3x32x32", "--batch", "3"), "--batch is 3")
