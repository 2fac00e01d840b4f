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
