"""The static format table: target -> file suffix, precisions, packages, build options. Answers without importing
runtimes (a target's module and its options class are imported only when asked for)."""
from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

from compressor.core.errors import MissingDependencyError, unknown_name
from compressor.targets.options import TargetOptions


@dataclass(frozen=True)
class TargetInfo:
    """One row of the format table; ``entry`` (the Target) and ``options`` (its typed build options, a
    :class:`~compressor.targets.options.TargetOptions`), both ``module:cls``, are imported only when used."""

    name: str
    suffix: str
    precisions: tuple[str, ...]
    packages: tuple[str, ...]
    entry: str
    options: str
    description: str

    @property
    def available(self) -> bool:
        """True when every required package is importable."""
        return all(importlib.util.find_spec(p) is not None for p in self.packages)

    @property
    def options_class(self) -> type[TargetOptions]:
        """The target's options class (importing it needs none of the runtime packages)."""
        return _import(self.options)


TARGETS: dict[str, TargetInfo] = {
    info.name: info
    for info in (
        TargetInfo("onnxruntime", ".onnx", ("fp32", "fp16", "int8"), ("onnxruntime",),
                   "compressor.targets.onnxruntime:OnnxRuntimeTarget",
                   "compressor.targets.onnxruntime:OnnxRuntimeOptions",
                   "ONNX Runtime: CPU provider; CUDA and TensorRT execution providers when present"),
        TargetInfo("tensorrt", ".engine", ("fp32", "fp16", "int8"), ("tensorrt",),
                   "compressor.targets.tensorrt.target:TensorRtTarget",
                   "compressor.targets.tensorrt.options:TensorRtOptions",
                   "TensorRT engine from ONNX (NVIDIA GPU): strongly typed on TensorRT 11+, flags/calibration on 10"),
        TargetInfo("openvino", ".xml", ("fp32", "fp16", "bf16", "int8"), ("openvino",),
                   "compressor.targets.openvino.target:OpenVinoTarget",
                   "compressor.targets.openvino.options:OpenVinoOptions",
                   "OpenVINO IR on CPU: fp32 in f32, fp16 compressed IR, bf16 where the CPU has it, "
                   "int8 (Q/DQ or NNCF)"),
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
    return _import(info.entry)()


def options_class(name: str) -> type[TargetOptions]:
    """The typed build options of target ``name`` (unknown names get "did you mean")."""
    return target_info(name).options_class


def _import(entry: str):
    module_name, attr = entry.split(":")
    return getattr(importlib.import_module(module_name), attr)


# Artifacts whose format is run by another target's runtime (the exported ONNX runs on ONNX Runtime).
RUNS_ON = {"onnx": "onnxruntime"}


def open_runner(artifact, *, threads: int | None = None):
    """A (not yet active) runner for any artifact, dispatched through the table."""
    return load_target(RUNS_ON.get(artifact.target, artifact.target)).load_runner(artifact, threads=threads)
