"""ONNX Runtime target: the (converted) ONNX is the artifact; the runner picks TensorRT, CUDA or CPU providers.

fp32 copies the checked ONNX; fp16 converts weights and compute to half with float32 inputs and outputs;
int8 is the Q/DQ model from calibration (the same file OpenVINO and TensorRT consume).
"""
from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from compressor.core.files import atomic_path
from compressor.targets.backend_runner import BackendRunner
from compressor.targets.base import Artifact, Feed, Runner, Target, default_name
from compressor.targets.onnx_io import graph_specs, load_onnx, read_metadata
from compressor.targets.options import TargetOptions


@dataclass(frozen=True)
class OnnxRuntimeOptions(TargetOptions):
    """``provider``: the execution provider the runner asks for ("auto": TensorRT, CUDA, then CPU, as present;
    or a name such as "cuda" or "CPUExecutionProvider"). Always recorded in the sidecar."""

    target = "onnxruntime"
    provider: str = field(default="auto", metadata={"sidecar": "always"})


class OnnxRuntimeTarget(Target):
    """Builds ``<name>.onnx`` plus a sidecar that records the provider choice and any quantization."""

    name = "onnxruntime"
    precisions = ("fp32", "fp16", "int8")
    options_class = OnnxRuntimeOptions

    def build(self, onnx_path: Path, *, precision: str, out_dir: Path, name: str | None = None,
              options: OnnxRuntimeOptions | Mapping[str, Any] | None = None,
              calibration: Sequence[Feed] | None = None, int8: Any = None) -> Artifact:
        from compressor.targets.quantize import Int8Options, quantize_qdq, to_fp16

        self.check_precision(precision)
        options = self.read_options(options, precision)
        self.require_calibration(precision, calibration)
        model = load_onnx(onnx_path)
        inputs, outputs = graph_specs(model)
        dest = Path(out_dir) / f"{name or default_name(Path(onnx_path), precision)}.onnx"
        meta: dict[str, Any] = {"onnx_metadata": read_metadata(model)}
        if precision == "fp16":
            to_fp16(Path(onnx_path), dest)
        elif precision == "int8":
            int8 = int8 or Int8Options()
            quantize_qdq(Path(onnx_path), dest, calibration, int8)
            meta["int8"] = {**asdict(int8), "calibration_samples": len(calibration)}
        elif Path(onnx_path).resolve() != dest.resolve():
            with atomic_path(dest) as tmp:
                shutil.copyfile(onnx_path, tmp)
        artifact = Artifact(target=self.name, precision=precision, path=dest.resolve(), files=(dest.name,),
                            inputs=tuple(inputs), outputs=tuple(outputs),
                            options=options.to_sidecar(), source=str(Path(onnx_path).resolve()),
                            metadata=meta)
        artifact.save()
        return artifact

    def load_runner(self, artifact: Artifact, *, threads: int | None = None) -> Runner:
        return BackendRunner(artifact, threads=threads)
