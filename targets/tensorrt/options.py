"""Build options of the TensorRT target."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from compressor.targets.options import TargetOptions


@dataclass(frozen=True)
class TensorRtOptions(TargetOptions):
    """``calibration``: int8 from the Q/DQ ONNX ("qdq") or TensorRT 10's implicit calibration with a cache
    ("implicit"; deprecated, still what DLA needs); ``max_batch``: the largest batch of the optimisation profile
    of a dynamic-batch model. Both only steer the build: the sidecar records neither (its plan metadata does)."""

    target = "tensorrt"
    calibration: Literal["qdq", "implicit"] = field(default="qdq", metadata={"sidecar": "never"})
    max_batch: int = field(default=4, metadata={"sidecar": "never"})

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise self._error("max_batch", f"must be at least 1, got {self.max_batch}")
