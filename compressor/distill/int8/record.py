"""What the INT8 stage did, as typed records the run report holds (and writes as JSON with ``to_dict``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class QatRecord:
    """Quantization-aware fine-tuning behind an INT8 engine."""

    iterations: int
    scheme: str
    seconds: float
    relative_l1_before: float
    relative_l1_after: float
    used: bool = False
    trained_ranges: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**self.details, "iterations": self.iterations, "scheme": self.scheme, "seconds": self.seconds,
                "relative_l1_to_fp32_before": self.relative_l1_before,
                "relative_l1_to_fp32_after": self.relative_l1_after, "used": self.used,
                "trained_ranges": self.trained_ranges}


@dataclass(frozen=True)
class Int8Record:
    """The accuracy gate's outcome for one INT8 engine: the metric against the FP32 model, the budget, the
    layers kept in float, how it was quantized, and the QAT behind it (None without QAT)."""

    reference_metric: float
    budget: float
    passed: bool
    kept_in_float: tuple[str, ...]
    tries: tuple[dict[str, Any], ...]
    calibration_samples: int
    method: str
    quantizer: str
    float_layers: str = "fp32"
    qat: QatRecord | None = None

    @property
    def qat_iterations(self) -> int:
        """QAT steps behind the artifact (0 without QAT, or when the gate fell back to the FP32 export)."""
        return self.qat.iterations if self.qat is not None and self.qat.used else 0

    def to_dict(self) -> dict[str, Any]:
        out = {"reference_metric": self.reference_metric, "budget": self.budget, "passed": self.passed,
               "kept_in_float": list(self.kept_in_float), "tries": [dict(t) for t in self.tries],
               "calibration_samples": self.calibration_samples, "method": self.method,
               "quantizer": self.quantizer, "float_layers": self.float_layers}
        if self.qat is not None:
            out["qat"] = self.qat.to_dict()
        return out
