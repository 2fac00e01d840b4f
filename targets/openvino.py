"""OpenVINO target: IR converted from the ONNX; fp32 compiled with f32 inference precision, fp16 as a compressed IR."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from compressor.errors import BuildError
from targets.backend_runner import BackendRunner
from targets.base import Artifact, Runner, Target, default_name
from targets.files import atomic_path
from targets.onnx_io import graph_specs, load_onnx

# precision -> (compress weights to fp16 in the IR, CPU inference precision hint)
PRECISIONS: dict[str, tuple[bool, str]] = {"fp32": (False, "f32"), "fp16": (True, "f32")}


class OpenVinoTarget(Target):
    """Builds ``<name>.xml`` + ``<name>.bin``. This CPU would default to bf16: the hint is always explicit."""

    name = "openvino"
    precisions = tuple(PRECISIONS)

    def build(self, onnx_path: Path, *, precision: str, out_dir: Path, name: str | None = None,
              options: Mapping[str, Any] | None = None) -> Artifact:
        import openvino as ov

        self.check_precision(precision)
        inputs, outputs = graph_specs(load_onnx(onnx_path))
        compress, hint = PRECISIONS[precision]
        stem = name or default_name(Path(onnx_path), precision)
        xml, bin_ = Path(out_dir) / f"{stem}.xml", Path(out_dir) / f"{stem}.bin"
        try:
            model = ov.convert_model(str(onnx_path))
        except Exception as exc:  # OpenVINO raises generic errors
            raise BuildError(f"OpenVINO cannot convert {onnx_path}: {str(exc).strip().splitlines()[0]}") from None
        with atomic_path(xml) as tmp_xml, atomic_path(bin_) as tmp_bin:
            ov.save_model(model, str(tmp_xml), compress_to_fp16=compress)
            tmp_xml.with_suffix(".bin").replace(tmp_bin)
        artifact = Artifact(target=self.name, precision=precision, path=xml.resolve(), files=(xml.name, bin_.name),
                            inputs=tuple(inputs), outputs=tuple(outputs),
                            options={"device": "CPU", "inference_precision": hint, **(options or {})},
                            source=str(Path(onnx_path).resolve()),
                            metadata={"weights": "fp16" if compress else "fp32", "openvino": ov.get_version()})
        artifact.save()
        return artifact

    def load_runner(self, artifact: Artifact, *, threads: int | None = None) -> Runner:
        return BackendRunner(artifact, threads=threads)
