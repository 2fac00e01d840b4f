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


def test_mean_statistic_tolerates_a_few_step_errors_but_not_a_broken_output():
    ref = {"y": np.linspace(0, 1, 1000, dtype=np.float32)}
    step_errors = {"y": ref["y"].copy()}
    step_errors["y"][::100] += 0.05  # ten elements off by a quantization step
    tol = Tolerance.for_precision("int8")
    assert tol.stat == "mean"
    assert compare_outputs([(ref, step_errors)], tol).passed
    assert not compare_outputs([(ref, step_errors)], Tolerance.for_precision("fp32")).passed
    broken = {"y": ref["y"] + 0.1}
    assert not compare_outputs([(ref, broken)], tol).passed
