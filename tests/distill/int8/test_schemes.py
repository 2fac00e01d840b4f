"""Quantization schemes: selected per target choice and per recipe QAT scheme, each with its own mirror,
ranking and build settings."""
import pytest

from compressor.core.errors import CompressError
from compressor.distill.int8.ranges import NNCF_MEAN_MIN_MAX, SYMMETRIC_ABSMAX
from compressor.distill.int8.schemes import (
    DYNAMIC,
    NNCF,
    QDQ,
    SCHEMES,
    qat_scheme,
    scheme_for,
)
from compressor.distill.recipe import TargetChoice


@pytest.mark.parametrize("choice, scheme", [
    (TargetChoice("onnxruntime", "int8"), QDQ),
    (TargetChoice("tensorrt", "int8"), QDQ),
    (TargetChoice("openvino", "int8"), QDQ),
    (TargetChoice("openvino", "int8", "qdq"), QDQ),
    (TargetChoice("openvino", "int8", "nncf"), NNCF),
    (TargetChoice("onnxruntime", "int8", "dynamic"), DYNAMIC),
])
def test_each_target_choice_selects_its_exporters_scheme(choice, scheme):
    assert scheme_for(choice) is scheme


def test_a_quantizer_for_a_target_without_that_option_is_refused():
    with pytest.raises(CompressError, match="'quantizer' does not apply to target tensorrt"):
        scheme_for(TargetChoice("tensorrt", "int8", "dynamic"))
    with pytest.raises(CompressError, match="'nncf' is not one of qdq, dynamic"):
        scheme_for(TargetChoice("onnxruntime", "int8", "nncf"))
    with pytest.raises(CompressError, match="'dynamic' is not one of qdq, nncf"):
        scheme_for(TargetChoice("openvino", "int8", "dynamic"))


def test_an_unknown_openvino_quantizer_is_refused_in_one_line():
    with pytest.raises(CompressError, match="'nncg' is not one of qdq, nncf \\(did you mean 'nncf'\\?\\)"):
        scheme_for(TargetChoice("openvino", "int8", "nncg"))


def test_recipe_qat_schemes_keep_their_names():
    assert SCHEMES == ("qdq", "openvino")
    assert qat_scheme("qdq") is QDQ and qat_scheme("openvino") is NNCF
    with pytest.raises(CompressError):
        qat_scheme("dynamic")  # nothing calibrated to mirror
    assert qat_scheme("openvino") is scheme_for(TargetChoice("openvino", "int8", "nncf"))


def test_each_scheme_knows_its_mirror_and_name():
    assert QDQ.activations is SYMMETRIC_ABSMAX and NNCF.activations is NNCF_MEAN_MIN_MAX
    assert (QDQ.artifact_suffix, NNCF.artifact_suffix) == ("", "_nncf")
    assert QDQ.ranking_options("entropy").method == "entropy" and QDQ.ranking_options("entropy").activations == "int8"
    nncf_like = NNCF.ranking_options("entropy", ranges_from="fp32.onnx")
    assert (nncf_like.method, nncf_like.activations, nncf_like.ranges_from) == ("minmax", "uint8", "fp32.onnx")


def test_each_scheme_ranks_layers_with_its_own_ranking(tmp_path):
    """Q/DQ: the error each node adds; NNCF: what each gives back in float, on an NNCF-placed Q/DQ model."""
    import numpy as np

    from compressor.core.tensor_spec import TensorSpec
    from compressor.models import create_model
    from compressor.targets.accuracy_gate import (
        rank_by_float_gain,
        rank_sensitive_nodes,
    )
    from compressor.targets.onnx import export_onnx
    from compressor.targets.openvino.nncf import nncf_like_qdq_options
    from compressor.targets.quantize import Int8Options, quantize_qdq

    spec = TensorSpec.parse("image:Nx3x16x16:float32:0..1")
    fp32 = export_onnx(create_model("tiny_convnet"), [spec], ["sr"], tmp_path / "fp32.onnx").path
    rng = np.random.default_rng(0)
    feeds = [{"image": rng.random((1, 3, 16, 16), dtype=np.float32)} for _ in range(4)]
    qdq = quantize_qdq(fp32, tmp_path / "qdq.onnx", feeds, Int8Options(use_cache=False))
    nncf_like = quantize_qdq(fp32, tmp_path / "nncf_like.onnx", feeds, nncf_like_qdq_options(use_cache=False))
    assert QDQ.rank_layers(fp32, feeds, "minmax") == rank_sensitive_nodes(fp32, qdq, feeds)
    assert NNCF.rank_layers(fp32, feeds, "minmax") == rank_by_float_gain(fp32, nncf_like, feeds)
    assert len(QDQ.rank_layers(fp32, feeds, "minmax")) == 5


@pytest.mark.parametrize("scheme", [QDQ, NNCF])
def test_bias_correction_is_off_after_qat(scheme):
    fresh = scheme.build_options("minmax", ("conv",))
    tuned = scheme.build_options("minmax", ("conv",), after_qat=True, ranges_from="fp32.onnx")
    assert fresh.bias_correction and fresh.ranges_from is None and fresh.exclude == ("conv",)
    assert not tuned.bias_correction and tuned.ranges_from == "fp32.onnx"


def test_dynamic_scheme_ranks_the_matmuls_of_a_transformer_by_the_error_they_add(exported):
    from compressor.core.feeds import random_feeds

    source = exported["tiny_pair_transformer"]
    ranking = DYNAMIC.rank_layers(source.path, random_feeds(source.inputs, count=4, batches=(2,), seed=0),
                                  "minmax")
    import onnx

    matmuls = {n.name for n in onnx.load(str(source.path)).graph.node if n.op_type in ("MatMul", "Gemm")}
    assert {name for name, _ in ranking} >= matmuls and ranking[0][0] in matmuls
    assert ranking[0][1] > 0 and [e for _, e in ranking] == sorted((e for _, e in ranking), reverse=True)
