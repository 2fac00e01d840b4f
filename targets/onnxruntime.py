"""ONNX Runtime target: the (converted) ONNX is the artifact; the runner picks TensorRT, CUDA or CPU providers.

fp32 copies the checked ONNX; fp16 converts weights and compute to half with float32 inputs and outputs;
int8 is the Q/DQ model from calibration (the same file OpenVINO and TensorRT consume), or with
``quantizer: dynamic`` ONNX Runtime's dynamic quantization (int8 weights, activations quantized per call).
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import onnx

from compressor.core.errors import BuildError
from compressor.core.files import atomic_path
from compressor.targets.backend_runner import BackendRunner
from compressor.targets.base import Artifact, Feed, Runner, Target, default_name
from compressor.targets.onnx_io import graph_specs, load_onnx, read_metadata
from compressor.targets.onnx_normalize import normalized_onnx
from compressor.targets.options import TargetOptions


@dataclass(frozen=True)
class OnnxRuntimeOptions(TargetOptions):
    """``provider``: the execution provider the runner asks for ("auto": TensorRT, CUDA, then CPU, as present;
    or a name such as "cuda" or "CPUExecutionProvider"). Always recorded in the sidecar.
    ``quantizer``: int8 from the shared Q/DQ ONNX with calibrated activations ("qdq") or ONNX Runtime's dynamic
    quantization ("dynamic": int8 MatMul/Gemm/Gather weights, activations quantized per call from their own
    range; no calibration; suits transformers on CPUs). It only steers the build (the int8 metadata names it)."""

    target = "onnxruntime"
    provider: str = field(default="auto", metadata={"sidecar": "always"})
    quantizer: Literal["qdq", "dynamic"] = field(default="qdq", metadata={"sidecar": "never"})

    def check_precision(self, precision: str) -> None:
        """``quantizer`` applies to int8 artifacts only."""
        if self.quantizer != "qdq" and precision != "int8":
            raise self._error("quantizer", f"{self.quantizer} applies to int8 artifacts only, not {precision}")


class OnnxRuntimeTarget(Target):
    """Builds ``<name>.onnx`` plus a sidecar that records the provider choice and any quantization."""

    name = "onnxruntime"
    precisions = ("fp32", "fp16", "int8")
    options_class = OnnxRuntimeOptions

    def build(self, onnx_path: Path, *, precision: str, out_dir: Path, name: str | None = None,
              options: OnnxRuntimeOptions | Mapping[str, Any] | None = None,
              calibration: Sequence[Feed] | None = None, int8: Any = None) -> Artifact:
        from compressor.targets.quantize import (
            Int8Options,
            quantize_dynamic_int8,
            quantize_qdq,
            to_fp16,
        )

        self.check_precision(precision)
        options = self.read_options(options, precision)
        dynamic = precision == "int8" and options.quantizer == "dynamic"
        if not dynamic:
            self.require_calibration(precision, calibration)
        model = load_onnx(onnx_path)
        inputs, outputs = graph_specs(model)
        dest = Path(out_dir) / f"{name or default_name(Path(onnx_path), precision)}.onnx"
        meta: dict[str, Any] = {"onnx_metadata": read_metadata(model)}
        with tempfile.TemporaryDirectory(prefix="normalize-") as scratch:
            source, normalized = normalized_onnx(onnx_path, scratch)  # old-style graphs: current opset and IR
            if normalized:
                meta["normalized"] = normalized.to_dict()
            if precision == "fp16":
                to_fp16(source, dest)
            elif dynamic:
                excluded = tuple(int8.exclude) if int8 else ()
                quantize_dynamic_int8(source, dest, excluded)
                meta["int8"] = {"quantizer": "dynamic", "exclude": list(excluded), "per_channel": True,
                                "calibration_samples": 0}
            elif precision == "int8":
                int8 = int8 or Int8Options()
                quantize_qdq(source, dest, calibration, int8)
                meta["int8"] = {**asdict(int8), "calibration_samples": len(calibration)}
            elif Path(source).resolve() != dest.resolve():
                with atomic_path(dest) as tmp:
                    if _external_tensors(Path(source), model):  # one self-contained file, no data elsewhere
                        onnx.save(model, str(tmp))
                    else:
                        shutil.copyfile(source, tmp)
        artifact = Artifact(target=self.name, precision=precision, path=dest.resolve(), files=(dest.name,),
                            inputs=tuple(inputs), outputs=tuple(outputs),
                            options=options.to_sidecar(), source=str(Path(onnx_path).resolve()),
                            metadata=meta)
        artifact.save()
        return artifact

    def load_runner(self, artifact: Artifact, *, threads: int | None = None) -> Runner:
        return BackendRunner(artifact, threads=threads)


def _external_tensors(path: Path, model: onnx.ModelProto) -> bool:
    """True when ``path`` keeps tensors in external data (which ``model``, from ``load_onnx``, holds loaded);
    raises BuildError when the model is too large for one file."""
    from compressor.targets.onnx_io import uses_external_data

    if not uses_external_data(path):
        return False
    if model.ByteSize() >= 2**31:
        raise BuildError("an fp32 onnxruntime artifact of a model over 2 GB with external data is not supported")
    return True
