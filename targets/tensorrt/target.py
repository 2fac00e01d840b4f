"""TensorRT target: an engine built from ONNX through the TensorRT Python API, and its runner.

TensorRT 11+: strongly typed networks from the FP16 (casts) or Q/DQ ONNX. TensorRT 10: builder flags, or
implicit INT8 calibration with a cache (option ``calibration: implicit``). A timing cache is kept
beside the engine; dynamic axes get an optimisation profile. Device memory comes from torch's CUDA
allocator, so no extra CUDA binding is needed. Engines are tied to the GPU and TensorRT version: the
sidecar records both and the runner refuses a mismatch.
"""
from __future__ import annotations

import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping, Sequence

from compressor.core.files import atomic_path
from compressor.targets.base import Artifact, Feed, Runner, Target, default_name
from compressor.targets.onnx_io import graph_specs, load_onnx
from compressor.targets.tensorrt.builder import build_serialized
from compressor.targets.tensorrt.cuda import gpu_name
from compressor.targets.tensorrt.options import TensorRtOptions
from compressor.targets.tensorrt.plan import (
    PRECISIONS,
    BuildPlan,
    make_plan,
    tensorrt_version,
)
from compressor.targets.tensorrt.runner import TensorRtRunner


class TensorRtTarget(Target):
    """Builds ``<name>.engine`` (+ ``<name>.timing.cache``) from an ONNX model."""

    name = "tensorrt"
    precisions = PRECISIONS
    options_class = TensorRtOptions

    def build(self, onnx_path: Path, *, precision: str, out_dir: Path, name: str | None = None,
              options: TensorRtOptions | Mapping[str, Any] | None = None,
              calibration: Sequence[Feed] | None = None, int8: Any = None) -> Artifact:
        from compressor.targets.quantize import Int8Options

        self.check_precision(precision)
        options = self.read_options(options, precision)
        self.require_calibration(precision, calibration)
        inputs, outputs = graph_specs(load_onnx(onnx_path))
        plan = make_plan(inputs, precision, tensorrt_version(), implicit_calibration=options.calibration == "implicit",
                         max_batch=options.max_batch)
        gpu = gpu_name()
        stem = name or default_name(Path(onnx_path), precision)
        engine, cache = Path(out_dir) / f"{stem}.engine", Path(out_dir) / f"{stem}.timing.cache"
        int8 = int8 or Int8Options()
        with tempfile.TemporaryDirectory(prefix="trt-") as tmp:
            source = _onnx_for_plan(Path(onnx_path), plan, Path(tmp), calibration, int8)
            data = build_serialized(source, plan, cache, calibration=calibration if plan.implicit_calibration else None,
                                    calibration_cache=Path(out_dir) / f"{stem}.calibration.cache")
        with atomic_path(engine) as tmp_engine:
            tmp_engine.write_bytes(data)
        artifact = Artifact(target=self.name, precision=precision, path=engine.resolve(),
                            files=(engine.name, cache.name), inputs=tuple(inputs), outputs=tuple(outputs),
                            options=options.to_sidecar(), source=str(Path(onnx_path).resolve()),
                            metadata={"plan": _plan_dict(plan), "gpu": gpu,
                                      "tensorrt": ".".join(map(str, plan.trt_version)),
                                      **({"int8": asdict(int8)} if precision == "int8" else {})})
        artifact.save()
        return artifact

    def load_runner(self, artifact: Artifact, *, threads: int | None = None) -> Runner:
        return TensorRtRunner(artifact)


def _plan_dict(plan: BuildPlan) -> dict:
    data = asdict(plan)
    data["profiles"] = [{k: [list(s) for s in v] for k, v in p["shapes"].items()} for p in data["profiles"]]
    return data


def _onnx_for_plan(onnx_path: Path, plan: BuildPlan, folder: Path, calibration, int8) -> Path:
    """The graph the plan parses: the FP32 ONNX (normalized when it is old-style: opset < 13, initializers as
    inputs), its FP16 conversion, or its Q/DQ quantization."""
    from compressor.targets.onnx_normalize import normalized_onnx
    from compressor.targets.quantize import quantize_qdq, to_fp16

    onnx_path, _ = normalized_onnx(onnx_path, folder)
    if plan.onnx_kind == "fp16":
        return to_fp16(onnx_path, folder / "fp16.onnx")
    if plan.onnx_kind == "qdq":
        return quantize_qdq(onnx_path, folder / "qdq.onnx", calibration, int8)
    return onnx_path
