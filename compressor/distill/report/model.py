"""The run report as typed records; ``RunReport.to_dict()`` is the ``report.json`` structure."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from compressor.distill.int8.record import Int8Record
from compressor.distill.select import SelectionRecord

if TYPE_CHECKING:  # reading a report back needs no training stack
    from compressor.distill.tasks.base import Evaluation


@dataclass(frozen=True)
class Latency:
    """Latency statistics of one profile, in milliseconds."""

    median: float
    mean: float
    p90: float
    p99: float
    min: float
    max: float

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Latency:
        """The six statistics the report keeps from a profile's ``latency_ms`` (extra ones are dropped)."""
        return cls(**{k: values[k] for k in ("median", "mean", "p90", "p99", "min", "max")})

    def to_dict(self) -> dict[str, float]:
        return {"median": self.median, "mean": self.mean, "p90": self.p90, "p99": self.p99, "min": self.min,
                "max": self.max}


@dataclass(frozen=True)
class Parity:
    """An engine against PyTorch: the verdict, the largest difference, what the inputs were ("random" or
    "task data"), and the rest of the comparison (feeds, tolerance, per-output numbers)."""

    passed: bool
    max_abs: float
    inputs: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def sqnr_db(self) -> float | None:
        """The lowest signal-to-noise ratio over the outputs, when the comparison judged on it."""
        if self.details.get("tolerance", {}).get("stat") != "sqnr":
            return None
        values = [o.get("sqnr_db") for o in self.details.get("outputs", [])]
        finite = [v for v in values if v is not None]
        return min(finite) if finite else None

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "max_abs": self.max_abs, **self.details, "inputs": self.inputs}


@dataclass(frozen=True)
class ModelReport:
    """One trained role: its size, how it was obtained, and its metric measured through ``metric_engine``."""

    role: str
    params: int
    macs: int
    origin: str
    training: dict[str, Any]
    metric: dict[str, Any]
    metric_engine: str

    def to_dict(self) -> dict[str, Any]:
        return {"params": self.params, "macs": self.macs, "origin": self.origin, "training": self.training,
                "metric": self.metric, "metric_engine": self.metric_engine}


@dataclass(frozen=True)
class EngineReport:
    """One built engine: parity with PyTorch, the task metric through it, its profile; ``int8`` is the
    accuracy gate's record for an INT8 engine. ``profile`` is the whole measurement (report.json keeps its
    protocol next to the latency numbers)."""

    role: str
    target: str
    precision: str
    path: str
    size_bytes: int
    parity: Parity
    metric: dict[str, Any]
    latency: Latency
    throughput_fps: float
    cov: float
    profile: dict[str, Any]
    profile_input: tuple[str, ...]
    int8: Int8Record | None = None
    evaluation: Evaluation | None = field(default=None, compare=False)  # the task's, for its report details
    reused: dict[str, Any] | None = None  # built by an earlier run (stage cache): which; measured in this one

    @property
    def quantizer(self) -> str | None:
        """How an INT8 engine was quantized (``qdq``, ``nncf``, ``dynamic``); None for float engines."""
        return self.int8.quantizer if self.int8 is not None else None

    @property
    def label(self) -> str:
        """``target precision (quantizer)``: tells apart two INT8 engines on one target."""
        return engine_label(self.target, self.precision, self.quantizer)

    @property
    def protocol(self) -> dict[str, Any]:
        """How the latency was measured (warm-up, iterations, minimum duration, timer, host)."""
        return self.profile["protocol"]

    @property
    def warnings(self) -> tuple[str, ...]:
        """Why this engine's latency may not be trusted (high CoV, windows apart, a busy machine)."""
        return tuple(self.profile.get("warnings") or ())

    def to_dict(self) -> dict[str, Any]:
        out = {"role": self.role, "target": self.target, "precision": self.precision, "path": self.path,
               "size_bytes": self.size_bytes, "parity": self.parity.to_dict(), "metric": self.metric,
               "latency_ms": self.latency.to_dict(), "throughput_fps": self.throughput_fps, "cov": self.cov,
               "profile_input": list(self.profile_input)}
        if self.int8 is not None:
            out["int8_gate"] = self.int8.to_dict()
        if self.reused:
            out["reused"] = dict(self.reused)
        if self.profile.get("windows"):
            out["windows"] = self.profile["windows"]
        if self.warnings:
            out["warnings"] = list(self.warnings)
        return out | {"protocol": self.protocol}


def engine_label(target: str, precision: str, quantizer: str | None = None) -> str:
    """An engine's name in the report: ``openvino int8 (nncf)``."""
    return f"{target} {precision}" + (f" ({quantizer})" if quantizer else "")


@dataclass(frozen=True)
class PrecisionRow:
    """The student on one target x precision: ``value`` of the headline metric and its change from FP32."""

    target: str
    precision: str
    metric: str
    value: float
    delta_vs_fp32: float
    parity_passed: bool
    parity_max_abs: float
    latency_median_ms: float
    latency_p99_ms: float
    size_bytes: int
    kept_in_float: tuple[str, ...] = ()
    quantizer: str | None = None
    float_layers: str | None = None
    gate_passed: bool | None = None
    qat_iterations: int = 0
    kept_in_float_modules: tuple[str, ...] = ()  # the same layers by PyTorch module path: "body.0 (node_conv2d_1)"

    def to_dict(self) -> dict[str, Any]:
        out = {"target": self.target, "precision": self.precision, self.metric: self.value,
                "delta_vs_fp32": self.delta_vs_fp32, "parity_passed": self.parity_passed,
                "parity_max_abs": self.parity_max_abs, "latency_median_ms": self.latency_median_ms,
                "latency_p99_ms": self.latency_p99_ms, "size_bytes": self.size_bytes,
                "kept_in_float": list(self.kept_in_float), "quantizer": self.quantizer,
                "float_layers": self.float_layers, "gate_passed": self.gate_passed,
                "qat_iterations": self.qat_iterations}
        if self.kept_in_float_modules:
            out["kept_in_float_modules"] = list(self.kept_in_float_modules)
        return out


@dataclass(frozen=True)
class Summary:
    """The headline comparison: student vs baseline (same steps, no KD) vs teacher, and the speed-up."""

    metric: str
    student: float
    baseline: float
    teacher: float
    teacher_to_student_latency_ratio: float
    teacher_to_student_params_ratio: float
    all_parity_passed: bool

    @property
    def student_minus_baseline(self) -> float:
        """What distillation gained over training the student alone."""
        return self.student - self.baseline

    def to_dict(self) -> dict[str, Any]:
        m = self.metric
        return {f"student_{m}": self.student, f"baseline_{m}": self.baseline, f"teacher_{m}": self.teacher,
                "student_minus_baseline": self.student_minus_baseline,
                "teacher_to_student_latency_ratio": self.teacher_to_student_latency_ratio,
                "teacher_to_student_params_ratio": self.teacher_to_student_params_ratio,
                "all_parity_passed": self.all_parity_passed}


@dataclass(frozen=True)
class DeviceProfile:
    """Latency measured on a device (a bundle's profile step), merged into the report afterwards."""

    device: str
    target: str
    precision: str
    latency: Latency
    throughput_fps: float | None
    cov: float | None
    protocol: dict[str, Any]
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "target": self.target, "precision": self.precision,
                "latency_ms": self.latency.to_dict(), "throughput_fps": self.throughput_fps, "cov": self.cov,
                "protocol": self.protocol, "source": self.source}


@dataclass(frozen=True)
class RunReport:
    """Everything ``compress run`` measured. ``details`` / ``details_markdown``: the task's own findings."""

    recipe: str
    recipe_source: str
    task: str
    seed: int
    quick: bool
    created: str
    versions: dict[str, str]
    host: dict[str, Any]
    headline_metric: str
    models: tuple[ModelReport, ...]
    engines: tuple[EngineReport, ...]
    summary: Summary
    precision_matrix: tuple[PrecisionRow, ...]
    wall_seconds: float
    details: dict[str, Any] = field(default_factory=dict)
    details_markdown: str = ""
    bundle: str | None = None
    device_profiles: tuple[DeviceProfile, ...] = ()
    selection: SelectionRecord | None = None  # the engine deploy.select chose (the bundle holds it) and why
    layers: dict[str, Any] = field(default_factory=dict)  # per-layer time by module and the precision audit
    layers_markdown: str = ""
    reused_exports: dict[str, Any] = field(default_factory=dict)  # ONNX file -> the earlier run it came from

    def to_dict(self) -> dict[str, Any]:
        """The ``report.json`` structure (optional sections only when present)."""
        out: dict[str, Any] = {
            "recipe": self.recipe, "recipe_source": self.recipe_source, "task": self.task, "seed": self.seed,
            "quick": self.quick, "created": self.created, "versions": self.versions, "host": self.host,
            "headline_metric": self.headline_metric, "models": {m.role: m.to_dict() for m in self.models},
            "summary": self.summary.to_dict(), "artifacts": [e.to_dict() for e in self.engines],
            "precision_matrix": [r.to_dict() for r in self.precision_matrix], "wall_seconds": self.wall_seconds}
        if self.details:
            out["details"] = self.details
        if self.details_markdown:
            out["details_markdown"] = self.details_markdown
        if self.bundle:
            out["bundle"] = self.bundle
        if self.device_profiles:
            out["device_profiles"] = [d.to_dict() for d in self.device_profiles]
        if self.selection is not None:
            out["selection"] = self.selection.to_dict()
        if self.layers:
            out["layers"] = self.layers
        if self.layers_markdown:
            out["layers_markdown"] = self.layers_markdown
        if self.reused_exports:
            out["reused_exports"] = self.reused_exports
        return out
