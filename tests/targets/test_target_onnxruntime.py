import pytest

from tests.targets.contract import TargetContract


class TestOnnxRuntimeFP32(TargetContract):
    target, precision, package = "onnxruntime", "fp32", "onnxruntime"


class TestOnnxRuntimeFP16(TargetContract):
    target, precision, package = "onnxruntime", "fp16", "onnxruntime"

    def test_io_stays_float32_and_weights_are_half(self, built):
        import onnx

        model = onnx.load(str(built["tiny_convnet"].path))
        assert all(i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for i in model.graph.input)
        assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)


class TestOnnxRuntimeINT8(TargetContract):
    target, precision, package = "onnxruntime", "int8", "onnxruntime"

    def test_graph_holds_qdq_with_per_channel_weights(self, built):
        import onnx

        model = onnx.load(str(built["tiny_convnet"].path))
        ops = [n.op_type for n in model.graph.node]
        assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
        assert built["tiny_convnet"].metadata["int8"]["per_channel"] is True


def test_auto_providers_prefer_gpu_and_end_with_cpu():
    from compressor.runtime.backends import select_providers

    available = ["CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"]
    assert select_providers(available) == ["TensorrtExecutionProvider", "CUDAExecutionProvider",
                                           "CPUExecutionProvider"]
    assert select_providers(["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert select_providers(available, "cuda") == ["CUDAExecutionProvider", "CPUExecutionProvider"]


def test_dynamic_int8_quantizes_matmul_weights_without_calibration_and_keeps_parity(exported, tmp_path):
    import onnx

    from compressor.core.errors import BuildError
    from compressor.core.feeds import random_feeds
    from compressor.targets.compare import Tolerance, compare_runners
    from compressor.targets.quantize import Int8Options
    from compressor.targets.table import load_target, open_runner

    source = exported["tiny_pair_transformer"]
    target = load_target("onnxruntime")
    built = target.build(source.path, precision="int8", out_dir=tmp_path, name="dyn",
                         options={"quantizer": "dynamic"})  # no calibration data
    ops = [n.op_type for n in onnx.load(str(built.path)).graph.node]
    assert "DynamicQuantizeLinear" in ops and ("MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops)
    assert "QuantizeLinear" not in ops and built.metadata["int8"]["quantizer"] == "dynamic"
    feeds = random_feeds(source.inputs, count=3, batches=(1, 2), seed=0)
    with open_runner(source) as ref, open_runner(built) as run:
        parity = compare_runners(ref, run, feeds, Tolerance.for_precision("int8"))
    assert parity.passed and parity.outputs[0].noise_energy > 0  # quantized, yet within 20 dB SQNR
    matmuls = [n.name for n in onnx.load(str(source.path)).graph.node if n.op_type in ("MatMul", "Gemm")]
    kept = target.build(source.path, precision="int8", out_dir=tmp_path, name="kept",
                        options={"quantizer": "dynamic"}, int8=Int8Options(exclude=tuple(matmuls[:1])))
    assert kept.metadata["int8"]["exclude"] == matmuls[:1]
    assert matmuls[0] in [n.name for n in onnx.load(str(kept.path)).graph.node]  # still a float MatMul
    with pytest.raises(BuildError, match="applies to int8 artifacts only"):
        target.build(source.path, precision="fp32", out_dir=tmp_path, options={"quantizer": "dynamic"})
