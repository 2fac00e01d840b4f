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
from typing import Any, Sequence

from compressor.core.files import atomic_dir, ensure_writable_dir
from compressor.core.tensor_spec import TensorSpec
from compressor.core.version import __version__
from compressor.runtime import files_for as runtime_files
from compressor.targets.base import Artifact, Feed
from compressor.targets.bundle import (
    Bundle,
    SigningKey,
    bundle_destination,
    check_bundle_name,
    private_key_of,
    seal,
)
from compressor.targets.bundle_archive import write_archive
from compressor.targets.bundle_manifest import JETSON_FORMAT
from compressor.targets.tensorrt.plan import make_plan

ONNX_NAME, ENGINE_NAME = "model.onnx", "model.engine"


def jetson_record(inputs: Sequence[TensorSpec], precision: str, trt_version: tuple[int, ...]) -> dict[str, Any]:
    """The manifest's ``jetson`` record: the plan's exact trtexec build command, the shapes to profile at, notes.

    ``compress bundle verify`` recomputes it from the manifest's inputs and precision, so a build command
    edited into anything else is refused.
    """
    plan = make_plan(inputs, precision, (int(trt_version[0]), int(trt_version[1])))
    command = plan.trtexec_args(ONNX_NAME, ENGINE_NAME)
    shape_args = [a.replace("--optShapes", "--shapes") for a in command if a.startswith("--optShapes")]
    return {"tensorrt_plan": ".".join(map(str, trt_version)), "onnx": ONNX_NAME, "engine": ENGINE_NAME,
            "build_command": command, "shape_args": shape_args, "notes": list(plan.notes), "batch": 1}


def create_jetson_bundle(onnx: Artifact, out_dir: str | Path, *, precision: str = "fp16",
                         trt_version: tuple[int, int] = (10, 3), calibration: Sequence[Feed] | None = None,
                         name: str | None = None, signing_key: SigningKey = None) -> Bundle:
    """Write ``out_dir/<name>/`` and its ``.tar.gz``: ONNX, jetson.py (build + profile steps), run.py, manifest.

    ``signing_key`` signs the manifest as for :func:`compressor.targets.bundle.create_bundle`.
    """
    from compressor.targets.quantize import quantize_qdq

    plan = make_plan(onnx.inputs, precision, trt_version)
    record = jetson_record(onnx.inputs, precision, trt_version)
    name = check_bundle_name(name or f"{onnx.path.stem}-jetson-{precision}")
    key = private_key_of(signing_key)
    out_dir = ensure_writable_dir(out_dir)
    folder, archive = bundle_destination(out_dir, name)
    if plan.onnx_kind == "qdq" and not calibration:
        from compressor.core.errors import UnsupportedPrecisionError

        raise UnsupportedPrecisionError("a Jetson int8 bundle needs calibration data for its Q/DQ ONNX")
    with atomic_dir(folder) as tmp:
        model = tmp / ONNX_NAME
        if plan.onnx_kind == "qdq":
            with tempfile.TemporaryDirectory() as work:
                shutil.copyfile(quantize_qdq(onnx.path, Path(work) / "qdq.onnx", calibration), model)
        else:
            shutil.copyfile(onnx.path, model)
        for file_name, path in runtime_files("jetson").items():
            shutil.copyfile(path, tmp / file_name)
        digest, signer = seal(tmp, {
            "format": JETSON_FORMAT, "name": name, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "target": "tensorrt", "precision": precision, "selftest": False,
            "inputs": [s.to_dict() for s in onnx.inputs], "outputs": [s.to_dict() for s in onnx.outputs],
            "toolchain": {"edge_compress": __version__}, "jetson": record}, key)
        write_archive(tmp, archive, name)
    return Bundle(folder, archive, digest, signer)
