"""OpenVINO on CPU: the target (:mod:`.target`), its build options (:mod:`.options`), what the CPU offers
(:mod:`.cpu`) and NNCF's own INT8 path (:mod:`.nncf`). Runners are the shared bundle backend
(:class:`compressor.targets.backend_runner.BackendRunner`)."""
from compressor.targets.openvino.cpu import cpu_supports_bf16
from compressor.targets.openvino.options import FLOAT_LAYERS, OpenVinoOptions
from compressor.targets.openvino.target import OpenVinoTarget

__all__ = ["FLOAT_LAYERS", "OpenVinoOptions", "OpenVinoTarget", "cpu_supports_bf16"]
