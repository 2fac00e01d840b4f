from tests.target_contract import TargetContract, built  # noqa: F401  (fixture)


class TestOnnxRuntimeFP32(TargetContract):
    target, precision, package = "onnxruntime", "fp32", "onnxruntime"


def test_auto_providers_prefer_gpu_and_end_with_cpu():
    from targets.bundle_runtime import select_providers

    available = ["CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"]
    assert select_providers(available) == ["TensorrtExecutionProvider", "CUDAExecutionProvider",
                                           "CPUExecutionProvider"]
    assert select_providers(["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert select_providers(available, "cuda") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
