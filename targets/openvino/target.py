"""OpenVINO target: IR converted from the ONNX, on CPU, with an explicit inference precision.

fp32 computes in f32 (this CPU would default to bf16); fp16 is a compressed-weights IR; bf16 runs the
fp32 IR with bf16 inference where the CPU has it (never by surprise); int8 converts the Q/DQ ONNX
(``quantizer: qdq``, the same file ONNX Runtime and TensorRT use) or runs NNCF (``quantizer: nncf``).
An int8 artifact's layers left unquantized (those the accuracy gate keeps in float, and operations no
quantizer touches) compute in f32, or in bf16 when built with ``float_layers: bf16`` (again explicit):
published SPAN-Tiny with 12 of 23 convs kept out of INT8 runs 20.6 ms that way in f32, 14.6 ms in bf16.
"""
from __future__ import annotations

import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping, Sequence

from compressor.core.errors import BuildError, UnsupportedPrecisionError
from compressor.core.files import atomic_path
from compressor.targets.backend_runner import BackendRunner
from compressor.targets.base import Artifact, Feed, Runner, Target, default_name
from compressor.targets.onnx_io import graph_specs, load_onnx
from compressor.targets.onnx_normalize import normalized_onnx
from compressor.targets.openvino.cpu import cpu_supports_bf16
from compressor.targets.openvino.options import FLOAT_LAYERS, OpenVinoOptions

# precision -> (compress weights to fp16 in the IR, CPU inference precision hint)
PRECISIONS: dict[str, tuple[bool, str]] = {"fp32": (False, "f32"), "fp16": (True, "f32"), "bf16": (False, "bf16"),
                                           "int8": (False, "f32")}


class OpenVinoTarget(Target):
    """Builds ``<name>.xml`` + ``<name>.bin`` and a sidecar with the device and inference precision."""

    name = "openvino"
    precisions = tuple(PRECISIONS)
    options_class = OpenVinoOptions

    def build(self, onnx_path: Path, *, precision: str, out_dir: Path, name: str | None = None,
              options: OpenVinoOptions | Mapping[str, Any] | None = None,
              calibration: Sequence[Feed] | None = None, int8: Any = None) -> Artifact:
        self.check_precision(precision)
        options = self.read_options(options, precision)
        self.require_calibration(precision, calibration)
        quantizer, float_layers = options.quantizer, options.float_layers
        if "bf16" in (precision, float_layers) and not cpu_supports_bf16():
            raise UnsupportedPrecisionError("this CPU has no bf16 support in OpenVINO; build fp32 or fp16 instead"
                                            if precision == "bf16" else
                                            "this CPU has no bf16 support in OpenVINO; use float_layers: fp32")
        inputs, outputs = graph_specs(load_onnx(onnx_path))
        compress, hint = PRECISIONS[precision]
        if precision == "int8":
            hint = FLOAT_LAYERS[float_layers]
        stem = name or default_name(Path(onnx_path), precision)
        xml, bin_ = Path(out_dir) / f"{stem}.xml", Path(out_dir) / f"{stem}.bin"
        with tempfile.TemporaryDirectory(prefix="normalize-") as scratch:
            source, normalized = normalized_onnx(onnx_path, scratch)  # old-style graphs: current opset and IR
            model, meta = self._convert(source, precision, quantizer, calibration, int8, shown=Path(onnx_path))
        if normalized:
            meta["normalized"] = normalized.to_dict()
        import openvino as ov

        with atomic_path(xml) as tmp_xml, atomic_path(bin_) as tmp_bin:
            save_ir(model, tmp_xml, tmp_bin, compress, shown=xml)
        artifact = Artifact(target=self.name, precision=precision, path=xml.resolve(), files=(xml.name, bin_.name),
                            inputs=tuple(inputs), outputs=tuple(outputs),
                            options={"device": "CPU", "inference_precision": hint, **options.to_sidecar()},
                            source=str(Path(onnx_path).resolve()),
                            metadata={"weights": "fp16" if compress else ("int8" if precision == "int8" else "fp32"),
                                      "openvino": ov.get_version(), **meta})
        artifact.save()
        return artifact

    def _convert(self, onnx_path: Path, precision: str, quantizer: str, calibration, int8, *, shown: Path):
        import openvino as ov

        from compressor.targets.quantize import Int8Options, quantize_qdq

        try:
            if precision != "int8":
                return ov.convert_model(str(onnx_path)), {}
            int8 = int8 or Int8Options()
            meta = {"int8": {**asdict(int8), "quantizer": quantizer, "calibration_samples": len(calibration)}}
            if quantizer == "nncf":
                from compressor.targets.openvino.nncf import quantize_nncf

                return quantize_nncf(onnx_path, calibration, int8), meta
            with tempfile.TemporaryDirectory(prefix="qdq-") as tmp:
                qdq = quantize_qdq(onnx_path, Path(tmp) / "qdq.onnx", calibration, int8)
                return ov.convert_model(str(qdq)), meta
        except BuildError:
            raise
        except Exception as exc:  # OpenVINO and NNCF raise generic errors
            raise BuildError(f"OpenVINO cannot build {precision} from {shown}: "
                             f"{str(exc).strip().splitlines()[0]}") from None

    def load_runner(self, artifact: Artifact, *, threads: int | None = None) -> Runner:
        return BackendRunner(artifact, threads=threads)


def save_ir(model, tmp_xml: Path, tmp_bin: Path, compress: bool, *, shown: Path) -> None:
    """``ov.save_model`` into the temporary ``tmp_xml`` (its weights moved to ``tmp_bin``); a failure (a full
    disk, a folder gone) is one BuildError line naming the destination ``shown``, with no ``.bin`` left."""
    import openvino as ov

    written_bin = tmp_xml.with_suffix(".bin")
    try:
        ov.save_model(model, str(tmp_xml), compress_to_fp16=compress)
        written_bin.replace(tmp_bin)
    except (OSError, RuntimeError) as exc:
        reason = getattr(exc, "strerror", None) or (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
        if _nearly_full(tmp_xml.parent):  # OpenVINO's C++ streams say only "basic_ios::clear: iostream error"
            reason = "no space left on device"
        raise BuildError(f"cannot save the OpenVINO model to {shown}: {reason}") from None
    finally:
        written_bin.unlink(missing_ok=True)


def _nearly_full(folder: Path, margin: int = 1 << 20) -> bool:
    """Whether the file system holding ``folder`` has less than ``margin`` bytes free."""
    import shutil

    try:
        return shutil.disk_usage(folder).free < margin
    except OSError:
        return False
