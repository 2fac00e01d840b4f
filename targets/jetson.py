"""Jetson bundles: the ONNX (Q/DQ for INT8) plus the build and profile steps that run on the device.

Jetson (JetPack 6) ships TensorRT 10, so the plan is made for TensorRT 10 unless told otherwise; the
exact trtexec command is recorded in the manifest. ``compress report`` merges the profile.json the
device writes back into a run's report.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Sequence

from compressor.core.files import (
    atomic_dir,
    atomic_path,
    ensure_writable_dir,
    sha256_file,
    write_json,
)
from compressor.core.version import __version__
from compressor.runtime import files_for as runtime_files
from compressor.targets.base import Artifact, Feed
from compressor.targets.bundle import Bundle
from compressor.targets.tensorrt.plan import make_plan


def create_jetson_bundle(onnx: Artifact, out_dir: str | Path, *, precision: str = "fp16",
                         trt_version: tuple[int, int] = (10, 3), calibration: Sequence[Feed] | None = None,
                         name: str | None = None) -> Bundle:
    """Write ``out_dir/<name>/`` and its ``.tar.gz``: ONNX, jetson.py (build + profile steps), run.py, manifest."""
    import tarfile

    from compressor.targets.quantize import quantize_qdq

    plan = make_plan(onnx.inputs, precision, trt_version)
    name = name or f"{onnx.path.stem}-jetson-{precision}"
    out_dir = ensure_writable_dir(out_dir)
    folder, archive = out_dir / name, out_dir / f"{name}.tar.gz"
    with atomic_dir(folder) as tmp:
        model = tmp / "model.onnx"
        if plan.onnx_kind == "qdq":
            if not calibration:
                from compressor.core.errors import UnsupportedPrecisionError

                raise UnsupportedPrecisionError("a Jetson int8 bundle needs calibration data for its Q/DQ ONNX")
            with tempfile.TemporaryDirectory() as work:
                shutil.copyfile(quantize_qdq(onnx.path, Path(work) / "qdq.onnx", calibration), model)
        else:
            shutil.copyfile(onnx.path, model)
        for name, path in runtime_files("jetson").items():
            shutil.copyfile(path, tmp / name)
        shape_args = [a for a in plan.trtexec_args("model.onnx", "model.engine") if a.startswith("--optShapes")]
        files = {p.relative_to(tmp).as_posix(): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        write_json(tmp / "manifest.json", {
            "format": "edge-compress-jetson-bundle/1", "name": name, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "target": "tensorrt", "precision": precision, "selftest": False,
            "inputs": [s.to_dict() for s in onnx.inputs], "outputs": [s.to_dict() for s in onnx.outputs],
            "toolchain": {"edge_compress": __version__},
            "jetson": {"tensorrt_plan": ".".join(map(str, trt_version)), "onnx": "model.onnx",
                       "engine": "model.engine", "build_command": plan.trtexec_args("model.onnx", "model.engine"),
                       "shape_args": [a.replace("--optShapes", "--shapes") for a in shape_args],
                       "notes": list(plan.notes), "batch": 1},
            "files": files})
    with atomic_path(archive) as tmp_archive:
        with tarfile.open(tmp_archive, "w:gz") as tar:
            tar.add(folder, arcname=name)
    return Bundle(folder, archive)
