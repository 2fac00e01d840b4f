"""The static format table: target -> file suffix, precisions, packages. Answers without importing runtimes."""
from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

from compressor.core.errors import MissingDependencyError, unknown_name


@dataclass(frozen=True)
class TargetInfo:
    """One row of the format table; ``module:cls`` is imported only when the target is used."""

    name: str
    suffix: str
    precisions: tuple[str, ...]
    packages: tuple[str, ...]
    entry: str
    description: str

    @property
    def available(self) -> bool:
        """True when every required package is importable."""
        return all(importlib.util.find_spec(p) is not None for p in self.packages)


TARGETS: dict[str, TargetInfo] = {
    info.name: info
    for info in (
        TargetInfo("onnxruntime", ".onnx", ("fp32", "fp16", "int8"), ("onnxruntime",),
                   "compressor.targets.onnxruntime:OnnxRuntimeTarget",
                   "ONNX Runtime: CPU provider; CUDA and TensorRT execution providers when present"),
        TargetInfo("tensorrt", ".engine", ("fp32", "fp16", "int8"), ("tensorrt",), "compressor.targets.tensorrt:TensorRtTarget",
                   "TensorRT engine from ONNX (NVIDIA GPU): strongly typed on TensorRT 11+, flags/calibration on 10"),
        TargetInfo("openvino", ".xml", ("fp32", "fp16", "bf16", "int8"), ("openvino",), "compressor.targets.openvino:OpenVinoTarget",
                   "OpenVINO IR on CPU: fp32 in f32, fp16 compressed IR, bf16 where the CPU has it, int8 (Q/DQ or NNCF)"),
    )
}


def target_info(name: str) -> TargetInfo:
    """The table row for ``name``; unknown names get "did you mean"."""
    try:
        return TARGETS[name]
    except KeyError:
        raise unknown_name("target", name, TARGETS) from None


def load_target(name: str):
    """Instantiate the Target for ``name``, raising MissingDependencyError if its runtime is absent."""
    info = target_info(name)
    missing = [p for p in info.packages if importlib.util.find_spec(p) is None]
    if missing:
        raise MissingDependencyError(f"target '{name}' needs {', '.join(missing)}: pip install {' '.join(missing)}")
    module_name, cls_name = info.entry.split(":")
    return getattr(importlib.import_module(module_name), cls_name)()


# Artifacts whose format is run by another target's runtime (the exported ONNX runs on ONNX Runtime).
RUNS_ON = {"onnx": "onnxruntime"}


def open_runner(artifact, *, threads: int | None = None):
    """A (not yet active) runner for any artifact, dispatched through the table."""
    return load_target(RUNS_ON.get(artifact.target, artifact.target)).load_runner(artifact, threads=threads)
