"""Reading a run's ``report.json`` back into a :class:`RunReport`, and merging latency measured on a device."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from compressor.core.errors import CompressError
from compressor.distill.int8.record import Int8Record, QatRecord
from compressor.distill.report.model import (
    DeviceProfile,
    EngineReport,
    Latency,
    ModelReport,
    Parity,
    PrecisionRow,
    RunReport,
    Summary,
)


class ReportError(CompressError):
    """A report.json that is missing, not JSON, or not written by ``compress run``."""


def read_report(folder: Path) -> dict[str, Any]:
    """The run's report.json as written; one-line error when missing or unreadable."""
    path = Path(folder) / "report.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ReportError(f"no report.json in {folder}: run 'compress run' first") from None
    except ValueError as exc:
        raise ReportError(f"{path} is not valid JSON ({exc})") from None


def report_from_dict(data: dict[str, Any], source: str = "report.json") -> RunReport:
    """The typed report behind a ``report.json`` dict (``RunReport.to_dict`` inverted)."""
    try:
        metric = data["headline_metric"]
        return RunReport(
            recipe=data["recipe"], recipe_source=data["recipe_source"], task=data["task"], seed=data["seed"],
            quick=bool(data.get("quick")), created=data["created"], versions=data["versions"], host=data["host"],
            headline_metric=metric,
            models=tuple(_model(role, m) for role, m in data["models"].items()),
            engines=tuple(_engine(a) for a in data["artifacts"]), summary=_summary(data["summary"], metric),
            precision_matrix=tuple(_precision_row(r, metric) for r in data.get("precision_matrix") or []),
            wall_seconds=data["wall_seconds"], details=data.get("details") or {},
            details_markdown=data.get("details_markdown") or "", bundle=data.get("bundle"),
            device_profiles=tuple(_device_profile(d) for d in data.get("device_profiles", [])))
    except (KeyError, TypeError, AttributeError, StopIteration) as exc:
        raise ReportError(f"{source} is not a report written by 'compress run' ({type(exc).__name__}: {exc})") \
            from None


def merge_device_profile(report: RunReport, profile_path: Path, device: str | None = None) -> RunReport:
    """Add a profile measured on a device (a bundle's profile step) to the report, replacing an older one
    for the same device, target and precision."""
    try:
        profile = json.loads(Path(profile_path).read_text())
        latency = Latency.from_dict(profile["latency_ms"])
    except FileNotFoundError:
        raise ReportError(f"device profile {profile_path} does not exist") from None
    except (ValueError, KeyError, TypeError):
        raise ReportError(f"{profile_path} is not a profile written by 'compress profile' or a bundle") from None
    name = device or profile.get("device") or profile.get("protocol", {}).get("host", {}).get("device", "device")
    row = DeviceProfile(device=name, target=profile.get("target", "?"), precision=profile.get("precision", "?"),
                        latency=latency, throughput_fps=profile.get("throughput_fps"), cov=profile.get("cov"),
                        protocol=profile.get("protocol", {}), source=str(profile_path))
    kept = tuple(d for d in report.device_profiles
                 if (d.device, d.target, d.precision) != (row.device, row.target, row.precision))
    return dataclasses.replace(report, device_profiles=(*kept, row))


def int8_record_from_dict(gate: dict[str, Any]) -> Int8Record:
    """An ``int8_gate`` dict (``Int8Record.to_dict``) as the record."""
    qat = gate.get("qat")
    return Int8Record(reference_metric=gate["reference_metric"], budget=gate["budget"], passed=gate["passed"],
                      kept_in_float=tuple(gate["kept_in_float"]), tries=tuple(gate["tries"]),
                      calibration_samples=gate["calibration_samples"], method=gate["method"],
                      quantizer=gate["quantizer"], float_layers=gate.get("float_layers", "fp32"),
                      qat=None if qat is None else _qat_record(qat))


_QAT_NAMED = {"iterations", "scheme", "seconds", "relative_l1_to_fp32_before", "relative_l1_to_fp32_after", "used",
              "trained_ranges"}


def _qat_record(qat: dict[str, Any]) -> QatRecord:
    return QatRecord(iterations=qat["iterations"], scheme=qat["scheme"], seconds=qat["seconds"],
                     relative_l1_before=qat["relative_l1_to_fp32_before"],
                     relative_l1_after=qat["relative_l1_to_fp32_after"], used=qat.get("used", False),
                     trained_ranges=qat.get("trained_ranges", False),
                     details={k: v for k, v in qat.items() if k not in _QAT_NAMED})


def _model(role: str, m: dict[str, Any]) -> ModelReport:
    return ModelReport(role=role, params=m["params"], macs=m["macs"], origin=m["origin"],
                       training=m.get("training", {}), metric=m["metric"], metric_engine=m["metric_engine"])


def _engine(a: dict[str, Any]) -> EngineReport:
    parity = dict(a["parity"])
    latency, throughput, cov = a["latency_ms"], a["throughput_fps"], a["cov"]
    return EngineReport(
        role=a["role"], target=a["target"], precision=a["precision"], path=a["path"], size_bytes=a["size_bytes"],
        parity=Parity(passed=parity.pop("passed"), max_abs=parity.pop("max_abs"),
                      inputs=parity.pop("inputs", "random"), details=parity),
        metric=a["metric"], latency=Latency.from_dict(latency), throughput_fps=throughput, cov=cov,
        profile={"latency_ms": latency, "throughput_fps": throughput, "cov": cov, "protocol": a["protocol"]},
        profile_input=tuple(a["profile_input"]),
        int8=int8_record_from_dict(a["int8_gate"]) if "int8_gate" in a else None)


def _summary(s: dict[str, Any], metric: str) -> Summary:
    return Summary(metric=metric, student=s[f"student_{metric}"], baseline=s[f"baseline_{metric}"],
                   teacher=s[f"teacher_{metric}"],
                   teacher_to_student_latency_ratio=s["teacher_to_student_latency_ratio"],
                   teacher_to_student_params_ratio=s["teacher_to_student_params_ratio"],
                   all_parity_passed=s["all_parity_passed"])


def _precision_row(r: dict[str, Any], metric: str) -> PrecisionRow:
    return PrecisionRow(target=r["target"], precision=r["precision"], metric=metric, value=r[metric],
                        delta_vs_fp32=r["delta_vs_fp32"], parity_passed=r["parity_passed"],
                        parity_max_abs=r["parity_max_abs"], latency_median_ms=r["latency_median_ms"],
                        latency_p99_ms=r["latency_p99_ms"], size_bytes=r["size_bytes"],
                        kept_in_float=tuple(r.get("kept_in_float") or ()), quantizer=r.get("quantizer"),
                        float_layers=r.get("float_layers"), gate_passed=r.get("gate_passed"),
                        qat_iterations=r.get("qat_iterations") or 0)


def _device_profile(d: dict[str, Any]) -> DeviceProfile:
    return DeviceProfile(device=d["device"], target=d["target"], precision=d["precision"],
                         latency=Latency.from_dict(d["latency_ms"]), throughput_fps=d.get("throughput_fps"),
                         cov=d.get("cov"), protocol=d.get("protocol", {}), source=d.get("source", ""))
