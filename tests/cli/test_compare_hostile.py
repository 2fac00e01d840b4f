"""``compress compare`` on bad input: empty or sample-less ``.npz``, NaN/Inf inputs, a model that outputs NaN, a
built artifact given as the reference, and tolerances that are negative, NaN or infinite."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from compressor.core.errors import CompressError
from compressor.targets.compare import Tolerance, compare_outputs
from tests.support import assert_one_line_error, assert_untouched_outside, tree_state


@pytest.fixture(scope="module")
def fp32_artifact(exported, tmp_path_factory):
    from compressor.targets.table import load_target

    folder = tmp_path_factory.mktemp("compare-hostile")
    return load_target("openvino").build(exported["tiny_convnet"].path, precision="fp32", out_dir=folder)


def compare_refused(cli, tmp_path, *args, needles):
    before = tree_state(tmp_path)
    assert_one_line_error(cli("compare", *args), *needles)
    assert_untouched_outside(tmp_path, before)


def test_empty_and_sample_less_npz(cli, fp32_artifact, tmp_path):
    (tmp_path / "empty.npz").write_bytes(b"")
    compare_refused(cli, tmp_path, "tiny_convnet", fp32_artifact.path, "--inputs", tmp_path / "empty.npz",
                    needles=["empty.npz is empty"])
    np.savez(tmp_path / "none.npz", image=np.zeros((0, 1, 3, 32, 32), np.float32))
    compare_refused(cli, tmp_path, "tiny_convnet", fp32_artifact.path, "--inputs", tmp_path / "none.npz",
                    needles=["none.npz", "samples"])
    np.savez(tmp_path / "whole.npz", image=np.zeros((1, 3, 32, 32), np.float32))
    (tmp_path / "cut.npz").write_bytes((tmp_path / "whole.npz").read_bytes()[:30])
    compare_refused(cli, tmp_path, "tiny_convnet", fp32_artifact.path, "--inputs", tmp_path / "cut.npz",
                    needles=["cut.npz"])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs_are_named(cli, fp32_artifact, tmp_path, bad):
    image = np.random.default_rng(0).random((2, 1, 3, 32, 32), dtype=np.float32)
    image[1, 0, 2, 5, 5] = bad
    np.savez(tmp_path / "inputs.npz", image=image)
    compare_refused(cli, tmp_path, "tiny_convnet", fp32_artifact.path, "--inputs", tmp_path / "inputs.npz",
                    needles=["input 'image' of sample 1 holds 1 NaN or Inf"])


def test_a_model_that_outputs_nan_is_named_not_max_abs_zero(cli, tmp_path):
    """sqrt(x - 2) on inputs in [0, 1]: NaN everywhere, in the reference and in the engine alike."""
    graph = helper.make_graph(
        [helper.make_node("Sub", ["x", "two"], ["shifted"]), helper.make_node("Sqrt", ["shifted"], ["y"])], "nan",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
        initializer=[helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])])
    model = tmp_path / "nan.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(model))
    assert cli("build", model, "--target", "onnxruntime", "--out", tmp_path).code == 0
    result = cli("compare", model, tmp_path / "nan_fp32.onnx")
    assert result.code == 1 and result.out.startswith("FAIL")
    assert "the reference outputs 32 non-finite (NaN/Inf) value(s)" in result.out


def test_nan_in_the_reference_fails_and_is_counted():
    ref = {"y": np.array([1.0, np.nan, 3.0])}
    out = compare_outputs([(ref, {"y": np.array([1.0, 2.0, 3.0])})], Tolerance(1e-3, 0)).outputs[0]
    assert (out.ref_nonfinite, out.nonfinite, out.max_abs, out.passed) == (1, 0, 0.0, False)


def test_a_built_artifact_is_no_reference(cli, fp32_artifact, tmp_path):
    compare_refused(cli, tmp_path, fp32_artifact.path, fp32_artifact.path,
                    needles=["is an OpenVINO IR", "the reference must be a MODEL_SPEC", "or an FP32 .onnx"])
    compare_refused(cli, tmp_path, fp32_artifact.sidecar, fp32_artifact.path, needles=["is a JSON file"])
    assert "did you mean" not in cli("compare", fp32_artifact.path, fp32_artifact.path).err


@pytest.mark.parametrize("flag,value", [("--atol", "-1e-3"), ("--rtol", "nan"), ("--min-sqnr", "-5"),
                                        ("--atol", "inf"), ("--min-sqnr", "nan")])
def test_negative_nan_or_infinite_tolerances_are_refused(cli, fp32_artifact, tmp_path, flag, value):
    compare_refused(cli, tmp_path, "tiny_convnet", fp32_artifact.path, flag, value,
                    needles=[f"{flag} must be a finite number >= 0"])


def test_tolerance_itself_refuses_bad_bounds():
    for bad in ({"atol": -1.0, "rtol": 0.0}, {"atol": 0.0, "rtol": float("nan")},
                {"atol": 0.0, "rtol": 0.0, "min_sqnr_db": float("inf")}):
        with pytest.raises(CompressError, match="must be a finite number >= 0"):
            Tolerance(**bad)
    assert Tolerance(0.0, 0.0, min_sqnr_db=0.0).min_sqnr_db == 0.0  # zero bounds are bounds
