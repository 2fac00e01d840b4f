"""ONNX Runtime target: the ONNX itself is the artifact; the runner picks TensorRT, CUDA or CPU providers."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Mapping

from targets.backend_runner import BackendRunner
from targets.base import Artifact, Runner, Target, default_name
from targets.files import atomic_path
from targets.onnx_io import graph_specs, load_onnx, read_metadata


class OnnxRuntimeTarget(Target):
    """Builds by copying the checked ONNX beside a sidecar that records the provider choice."""

    name = "onnxruntime"
    precisions = ("fp32",)

    def build(self, onnx_path: Path, *, precision: str, out_dir: Path, name: str | None = None,
              options: Mapping[str, Any] | None = None) -> Artifact:
        self.check_precision(precision)
        model = load_onnx(onnx_path)
        inputs, outputs = graph_specs(model)
        dest = Path(out_dir) / f"{name or default_name(Path(onnx_path), precision)}.onnx"
        if Path(onnx_path).resolve() != dest.resolve():
            with atomic_path(dest) as tmp:
                shutil.copyfile(onnx_path, tmp)
        artifact = Artifact(target=self.name, precision=precision, path=dest.resolve(), files=(dest.name,),
                            inputs=tuple(inputs), outputs=tuple(outputs),
                            options={"provider": "auto", **(options or {})}, source=str(Path(onnx_path).resolve()),
                            metadata={"onnx_metadata": read_metadata(model)})
        artifact.save()
        return artifact

    def load_runner(self, artifact: Artifact, *, threads: int | None = None) -> Runner:
        return BackendRunner(artifact, threads=threads)
