"""TensorRT engines (NVIDIA GPU): the target (:mod:`.target`), its build options (:mod:`.options`), the build
plan decided without a GPU (:mod:`.plan`), the engine builder (:mod:`.builder`), the runner (:mod:`.runner`),
TensorRT 10's implicit INT8 calibrator (:mod:`.calibrator`) and torch-CUDA device helpers (:mod:`.cuda`).
TensorRT itself is imported only when an engine is built or run."""
from compressor.targets.tensorrt.cuda import gpu_name
from compressor.targets.tensorrt.options import TensorRtOptions
from compressor.targets.tensorrt.plan import (
                                              PRECISIONS,
                                              BuildPlan,
                                              Profile,
                                              make_plan,
                                              make_profiles,
                                              parse_version,
                                              tensorrt_version,
)
from compressor.targets.tensorrt.runner import TensorRtRunner
from compressor.targets.tensorrt.target import TensorRtTarget

__all__ = ["PRECISIONS", "BuildPlan", "Profile", "TensorRtOptions", "TensorRtRunner", "TensorRtTarget", "gpu_name",
           "make_plan", "make_profiles", "parse_version", "tensorrt_version"]
