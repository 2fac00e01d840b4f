"""Build options of the OpenVINO target."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from compressor.targets.options import TargetOptions

# int8 artifacts: precision of what stays out of INT8 -> OpenVINO's CPU inference precision hint
FLOAT_LAYERS = {"fp32": "f32", "bf16": "bf16"}


@dataclass(frozen=True)
class OpenVinoOptions(TargetOptions):
    """``quantizer``: int8 from the shared Q/DQ ONNX ("qdq") or NNCF's own post-training quantization ("nncf");
    ``static_shapes``: compile one static-shape model per input shape (faster for fixed-size inputs);
    ``float_layers``: int8 only, the precision of the layers left out of INT8 ("fp32" or "bf16").

    The sidecar records ``static_shapes`` and ``float_layers`` when set (the runtime reads them);
    ``quantizer`` only steers the build (the artifact's int8 metadata names it).
    """

    target = "openvino"
    quantizer: Literal["qdq", "nncf"] = field(default="qdq", metadata={"sidecar": "never"})
    static_shapes: bool = False
    float_layers: Literal["fp32", "bf16"] = "fp32"

    def check_precision(self, precision: str) -> None:
        """``float_layers`` other than fp32 applies to int8 artifacts only."""
        if self.float_layers != "fp32" and precision != "int8":
            raise self._error("float_layers", f"{self.float_layers} applies to int8 artifacts only, not {precision}")
