"""How a TensorRT engine is built, decided without a GPU: version rules, builder flags, optimisation
profiles and the equivalent ``trtexec`` command (for building on a Jetson). Tested everywhere; only
:func:`tensorrt_version` asks the installed TensorRT."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

from compressor.core.errors import MissingDependencyError, UnsupportedPrecisionError
from compressor.core.tensor_spec import TensorSpec

PRECISIONS = ("fp32", "fp16", "int8")


def parse_version(text: str) -> tuple[int, int]:
    """``"10.3.0.26"`` -> (10, 3)."""
    match = re.match(r"(\d+)\.(\d+)", text)
    if not match:
        raise ValueError(f"not a TensorRT version: {text!r}")
    return int(match.group(1)), int(match.group(2))


def tensorrt_version() -> tuple[int, int]:
    """The installed TensorRT (major, minor); MissingDependencyError when absent."""
    try:
        import tensorrt as trt
    except ImportError:
        raise MissingDependencyError("target 'tensorrt' needs TensorRT and an NVIDIA GPU "
                                     "(pip install tensorrt)") from None
    return parse_version(trt.__version__)


@dataclass(frozen=True)
class Profile:
    """One optimisation profile: min/opt/max shape per input."""

    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]


@dataclass(frozen=True)
class BuildPlan:
    """Everything the builder needs. ``onnx_kind`` is the graph to parse: fp32, fp16 (casts inside) or qdq."""

    trt_version: tuple[int, int]
    precision: str
    strongly_typed: bool
    onnx_kind: str
    builder_flags: tuple[str, ...] = ()
    implicit_calibration: bool = False
    profiles: tuple[Profile, ...] = ()
    workspace_mb: int = 1024
    notes: tuple[str, ...] = field(default_factory=tuple)

    def trtexec_args(self, onnx_name: str, engine_name: str, timing_cache: str = "timing.cache") -> list[str]:
        """The ``trtexec`` command that builds this plan (what a Jetson bundle runs on the device)."""
        args = ["trtexec", f"--onnx={onnx_name}", f"--saveEngine={engine_name}", f"--timingCacheFile={timing_cache}",
                f"--memPoolSize=workspace:{self.workspace_mb}M"]
        if self.strongly_typed and self.trt_version[0] < 11:
            args.append("--stronglyTyped")
        args += [f"--{flag.lower()}" for flag in self.builder_flags]
        if self.implicit_calibration:
            args.append("--calib=calibration.cache")
        for key, index in (("minShapes", 0), ("optShapes", 1), ("maxShapes", 2)):
            if self.profiles:
                shapes = ",".join(f"{name}:{'x'.join(map(str, dims[index]))}"
                                  for name, dims in self.profiles[0].shapes.items())
                args.append(f"--{key}={shapes}")
        return args


def make_profiles(specs: Sequence[TensorSpec], *, opt_batch: int = 1, max_batch: int = 4,
                  size_range: float = 2.0) -> tuple[Profile, ...]:
    """One profile covering batch 1..max_batch and other symbolic dims from example/size_range to example*size_range."""
    if not any(s.is_dynamic for s in specs):
        return ()
    shapes = {}
    for spec in specs:
        low, opt, high = [], [], []
        for axis, dim in enumerate(spec.shape):
            if isinstance(dim, int):
                low.append(dim), opt.append(dim), high.append(dim)
            elif axis == 0:
                low.append(1), opt.append(opt_batch), high.append(max_batch)
            else:
                example = spec.concrete_shape(1)[axis]
                low.append(max(1, int(example / size_range)))
                opt.append(example)
                high.append(int(example * size_range))
        shapes[spec.name] = (tuple(low), tuple(opt), tuple(high))
    return (Profile(shapes),)


def make_plan(specs: Sequence[TensorSpec], precision: str, trt_version: tuple[int, int], *,
              implicit_calibration: bool = False, max_batch: int = 4, workspace_mb: int = 1024) -> BuildPlan:
    """Decide how to build: TensorRT 11+ is always strongly typed (precision lives in the ONNX: casts for FP16,
    Q/DQ for INT8); TensorRT 10 uses builder flags for FP16, Q/DQ for INT8, or implicit calibration with a
    cache when asked (deprecated; still what DLA needs)."""
    if precision not in PRECISIONS:
        raise UnsupportedPrecisionError(f"target 'tensorrt' does not support precision '{precision}'; "
                                        f"it supports: {', '.join(PRECISIONS)}")
    major = trt_version[0]
    profiles = make_profiles(specs, max_batch=max_batch)
    common = dict(trt_version=trt_version, precision=precision, profiles=profiles, workspace_mb=workspace_mb)
    if implicit_calibration and major >= 11:
        raise UnsupportedPrecisionError("TensorRT 11 removed implicit INT8 calibration: build from the Q/DQ ONNX")
    if major >= 11:
        kind = {"fp32": "fp32", "fp16": "fp16", "int8": "qdq"}[precision]
        return BuildPlan(strongly_typed=True, onnx_kind=kind, **common,
                         notes=("TensorRT >= 11: strongly typed; precision comes from the ONNX graph",))
    if precision == "int8" and implicit_calibration:
        return BuildPlan(strongly_typed=False, onnx_kind="fp32", builder_flags=("INT8", "FP16"),
                         implicit_calibration=True, **common,
                         notes=("implicit INT8 calibration with a cache file (deprecated in TensorRT 10)",))
    if precision == "int8":
        return BuildPlan(strongly_typed=False, onnx_kind="qdq", builder_flags=("INT8", "FP16"), **common,
                         notes=("explicit quantization from the Q/DQ ONNX; FP16 allowed for the float layers",))
    flags = ("FP16",) if precision == "fp16" else ()
    return BuildPlan(strongly_typed=False, onnx_kind="fp32", builder_flags=flags, **common)
