import numpy as np
import pytest

from compressor.core.errors import CompressError
from compressor.targets.compare import Tolerance, compare_outputs


def test_identical_outputs_pass_with_zero_error():
    ref = {"y": np.linspace(-1, 1, 10, dtype=np.float32)}
    report = compare_outputs([(ref, dict(ref))], Tolerance(1e-6, 0))
    assert report.passed and report.max_abs == 0.0


def test_error_statistics_are_exact():
    ref = {"y": np.array([1.0, 2.0, 4.0], np.float32)}
    got = {"y": np.array([1.5, 2.0, 3.0], np.float32)}
    out = compare_outputs([(ref, got)], Tolerance(0.6, 0.0)).outputs[0]
    assert out.max_abs == pytest.approx(1.0)
    assert out.mean_abs == pytest.approx(0.5)
    assert out.max_rel == pytest.approx(0.25)  # relative to max|ref| = 4
    assert out.violations == 1 and not out.passed


def test_nan_and_inf_fail_even_within_tolerance():
    ref = {"y": np.zeros(4, np.float32)}
    got = {"y": np.array([0, np.nan, np.inf, 0], np.float32)}
    report = compare_outputs([(ref, got)], Tolerance(1e9, 1e9))
    assert not report.passed and report.outputs[0].nonfinite == 2


def test_relative_tolerance_scales_with_the_output_magnitude():
    ref = {"y": np.array([1000.0, 0.0], np.float32)}
    got = {"y": np.array([1000.5, 0.5], np.float32)}
    assert compare_outputs([(ref, got)], Tolerance(0.0, 1e-3)).passed
    assert not compare_outputs([(ref, got)], Tolerance(0.0, 1e-4)).passed


def test_shape_mismatch_is_an_error():
    with pytest.raises(CompressError, match="shape"):
        compare_outputs([({"y": np.zeros(3)}, {"y": np.zeros(4)})], Tolerance(1, 1))


def test_precision_defaults_loosen_with_precision():
    assert Tolerance.for_precision("fp32").atol < Tolerance.for_precision("fp16").atol
    assert Tolerance.for_precision("fp16", atol=0.5).atol == 0.5


def test_int8_is_judged_on_sqnr_which_tolerates_a_few_step_errors_but_not_a_broken_output():
    ref = {"y": np.linspace(0, 1, 1000, dtype=np.float32)}
    step_errors = {"y": ref["y"].copy()}
    step_errors["y"][::100] += 0.05  # ten elements off by a quantization step: ~41 dB
    tol = Tolerance.for_precision("int8")
    assert (tol.stat, tol.min_sqnr_db) == ("sqnr", 20.0)
    assert compare_outputs([(ref, step_errors)], tol).passed
    assert not compare_outputs([(ref, step_errors)], Tolerance.for_precision("fp32")).passed
    broken = {"y": ref["y"] + 0.1}  # every element off: signal 333.8, noise 10 -> 15.2 dB
    report = compare_outputs([(ref, broken)], tol)
    signal = np.square(ref["y"].astype(np.float64)).sum()
    assert report.outputs[0].sqnr_db == pytest.approx(10 * np.log10(signal / 10), rel=1e-6)
    assert not report.passed


def test_sqnr_golden_value_and_boundary():
    ref, got = {"y": np.array([3.0, 4.0])}, {"y": np.array([3.0, 4.5])}  # signal 25, noise 0.25: 20 dB
    out = compare_outputs([(ref, got)], Tolerance.for_precision("int8")).outputs[0]
    assert out.sqnr_db == pytest.approx(20.0) and out.passed
    assert not compare_outputs([(ref, got)], Tolerance.for_precision("int8", min_sqnr_db=20.5)).passed
    same = compare_outputs([(ref, ref)], Tolerance.for_precision("int8")).outputs[0]
    assert same.sqnr_db == float("inf") and same.passed


def test_sqnr_accumulates_over_feeds_not_per_feed():
    quiet = ({"y": np.array([10.0, 10.0])}, {"y": np.array([10.0, 10.0])})
    noisy = ({"y": np.array([1.0, 1.0])}, {"y": np.array([1.5, 1.5])})  # alone: 6 dB
    out = compare_outputs([quiet, noisy], Tolerance.for_precision("int8")).outputs[0]
    assert out.sqnr_db == pytest.approx(10 * np.log10(202 / 0.5))


def test_explicit_atol_on_int8_asks_for_the_mean_bound():
    tol = Tolerance.for_precision("int8", atol=0.01)
    assert (tol.stat, tol.atol) == ("mean", 0.01)
    with pytest.raises(CompressError, match="unknown parity statistic"):
        Tolerance(0, 0, "median")
