"""Reading a run's ``report.json`` back into a :class:`RunReport`, and merging latency measured on a device."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from compressor.core.errors import CompressError
from compressor.distill.int8.record import Int8Record, QatRecord
from compressor.distill.report.fields import Fields
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
from compressor.distill.select import SelectionRecord


class ReportError(CompressError):
    """A report.json that is missing, not JSON, or not written by ``compress run``."""


def read_report(folder: Path) -> dict[str, Any]:
    """The run's report.json as written; one-line error when missing or unreadable."""
    path = Path(folder) / "report.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ReportError(f"no report.json in {folder}: run 'compress run' first") from None
    except IsADirectoryError:
        raise ReportError(f"{path} is a folder, not a report") from None
    except UnicodeDecodeError:
        raise ReportError(f"{path} is not valid JSON (not UTF-8 text)") from None
    except ValueError as exc:
        raise ReportError(f"{path} is not valid JSON ({exc})") from None
    except RecursionError:
        raise ReportError(f"{path} is not valid JSON (nested too deeply)") from None


def report_from_dict(data: dict[str, Any], source: str = "report.json") -> RunReport:
    """The typed report behind a ``report.json`` dict (``RunReport.to_dict`` inverted). Every value the report
    shows is checked; a missing or bad one is one line naming ``source`` and the field."""
    f = Fields(source, ReportError)
    if not isinstance(data, dict):
        raise ReportError(f"{source} is not a report written by 'compress run' (not a JSON object)")
    if "recipe" not in data or "artifacts" not in data:
        raise ReportError(f"{source} is not a report written by 'compress run' (it has no recipe or artifacts)")
    metric = f.text(data, "headline_metric", "")
    for key in ("models", "artifacts"):
        if not (data.get(key) if isinstance(data.get(key), (dict, list)) else True):
            raise f.fail(key, "is empty: a run report has at least one")
    versions = f.mapping(data, "versions", "")
    for key in ("edge_compress", "torch"):
        f.text(versions, key, "versions")
    return RunReport(
        recipe=f.text(data, "recipe", ""), recipe_source=f.text(data, "recipe_source", ""),
        task=f.text(data, "task", ""), seed=f.number(data, "seed", "", integer=True),
        quick=bool(data.get("quick")), created=f.text(data, "created", ""), versions=versions,
        host=f.mapping(data, "host", ""), headline_metric=metric,
        models=tuple(_model(f, role, m, metric) for role, m in f.mapping(data, "models", "").items()),
        engines=f.each(f.items(data, "artifacts", ""), "artifacts", lambda a, w: _engine(f, a, w, metric)),
        summary=_summary(f, f.mapping(data, "summary", ""), metric),
        precision_matrix=f.each(f.items(data, "precision_matrix", "", optional=True), "precision_matrix",
                                lambda r, w: _precision_row(f, r, w, metric)),
        wall_seconds=f.number(data, "wall_seconds", "", minimum=0),
        details=f.mapping(data, "details", "", optional=True),
        details_markdown=f.text(data, "details_markdown", "", optional=True, default=""),
        bundle=f.text(data, "bundle", "", optional=True),
        device_profiles=f.each(f.items(data, "device_profiles", "", optional=True), "device_profiles",
                               lambda d, w: _device_profile(f, d, w)),
        selection=(SelectionRecord.from_dict(data["selection"], f"{source}: selection")
                   if "selection" in data else None),
        layers=f.mapping(data, "layers", "", optional=True),
        layers_markdown=f.text(data, "layers_markdown", "", optional=True, default=""),
        reused_exports=f.mapping(data, "reused_exports", "", optional=True))


def merge_device_profile(report: RunReport, profile_path: Path, device: str | None = None) -> RunReport:
    """Add a profile measured on a device (a bundle's profile step) to the report, replacing an older one
    for the same device, target and precision. Latencies must be finite and not negative, throughput and
    spread numbers; the device's name is made one printable line."""
    try:
        profile = json.loads(Path(profile_path).read_text())
    except FileNotFoundError:
        raise ReportError(f"device profile {profile_path} does not exist") from None
    except (ValueError, OSError, RecursionError):
        raise ReportError(f"{profile_path} is not a profile written by 'compress profile' or a bundle") from None
    if not isinstance(profile, dict) or not isinstance(profile.get("latency_ms"), dict):
        raise ReportError(f"{profile_path} is not a profile written by 'compress profile' or a bundle")
    f = Fields(str(profile_path), ReportError)
    protocol = f.mapping(profile, "protocol", "", optional=True)
    host = protocol.get("host") if isinstance(protocol.get("host"), dict) else {}
    named = device if device is not None else profile.get("device") or host.get("device") or "device"
    if not isinstance(named, str):
        raise f.fail("device", f"is {named!r}: expected text")
    row = DeviceProfile(device=one_line(named, f, "device"),
                        target=one_line(f.text(profile, "target", "", optional=True, default="?"), f, "target"),
                        precision=one_line(f.text(profile, "precision", "", optional=True, default="?"), f,
                                           "precision"),
                        latency=_latency(f, profile, ""),
                        throughput_fps=f.number(profile, "throughput_fps", "", optional=True, minimum=0),
                        cov=f.number(profile, "cov", "", optional=True, minimum=0),
                        protocol=protocol, source=str(profile_path))
    kept = tuple(d for d in report.device_profiles
                 if (d.device, d.target, d.precision) != (row.device, row.target, row.precision))
    return dataclasses.replace(report, device_profiles=(*kept, row))


def one_line(text: str, f: Fields, where: str) -> str:
    """``text`` as one printable line: control characters and line breaks become single spaces; empty is an
    error naming ``where``."""
    cleaned = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    if not cleaned:
        raise f.fail(where, "is empty")
    return cleaned


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


_LATENCY_KEYS = ("median", "mean", "p90", "p99", "min", "max")


def _latency(f: Fields, data: dict[str, Any], where: str) -> Latency:
    latency = f.mapping(data, "latency_ms", where)
    here = f"{where}.latency_ms" if where else "latency_ms"
    return Latency.from_dict({k: f.number(latency, k, here, minimum=0) for k in _LATENCY_KEYS})


def _model(f: Fields, role: str, m: Any, metric: str) -> ModelReport:
    where = f"models.{role}"
    return ModelReport(role=role, params=f.number(m, "params", where, integer=True, minimum=0),
                       macs=f.number(m, "macs", where, minimum=0), origin=f.text(m, "origin", where),
                       training=f.mapping(m, "training", where, optional=True),
                       metric=_metric(f, m, where, metric), metric_engine=f.text(m, "metric_engine", where))


def _metric(f: Fields, data: Any, where: str, metric: str) -> dict[str, Any]:
    values = f.mapping(data, "metric", where)
    f.number(values, metric, f"{where}.metric", finite=False)
    return values


def _engine(f: Fields, a: Any, where: str, metric: str) -> EngineReport:
    parity = dict(f.mapping(a, "parity", where))
    passed = f.flag(parity, "passed", f"{where}.parity")
    max_abs = f.number(parity, "max_abs", f"{where}.parity", finite=False)
    inputs = f.text(parity, "inputs", f"{where}.parity", optional=True, default="random")
    for key in ("passed", "max_abs", "inputs"):
        parity.pop(key, None)
    latency = f.mapping(a, "latency_ms", where)
    throughput = f.number(a, "throughput_fps", where, minimum=0)
    cov = f.number(a, "cov", where, minimum=0)
    protocol = f.mapping(a, "protocol", where)
    f.number(protocol, "min_duration_s", f"{where}.protocol", minimum=0)
    return EngineReport(
        role=f.text(a, "role", where), target=f.text(a, "target", where), precision=f.text(a, "precision", where),
        path=f.text(a, "path", where), size_bytes=f.number(a, "size_bytes", where, minimum=0),
        parity=Parity(passed=passed, max_abs=max_abs, inputs=inputs, details=parity),
        metric=_metric(f, a, where, metric), latency=_latency(f, a, where), throughput_fps=throughput, cov=cov,
        profile={"latency_ms": latency, "throughput_fps": throughput, "cov": cov, "protocol": protocol,
                 **({"windows": f.mapping(a, "windows", where)} if "windows" in a else {}),
                 "warnings": f.texts(a, "warnings", where, optional=True)},
        profile_input=tuple(f.texts(a, "profile_input", where)),
        int8=_int8(f, a["int8_gate"], f"{where}.int8_gate") if "int8_gate" in a else None,
        reused=f.mapping(a, "reused", where) if "reused" in a else None)


def _int8(f: Fields, gate: Any, where: str) -> Int8Record:
    if not isinstance(gate, dict):
        raise f.fail(where, f"is {gate!r}: expected an object")
    f.flag(gate, "passed", where)
    f.texts(gate, "kept_in_float", where)
    f.text(gate, "quantizer", where, optional=True)
    f.text(gate, "float_layers", where, optional=True)
    try:
        return int8_record_from_dict(gate)
    except (KeyError, TypeError, AttributeError) as exc:
        raise f.fail(where, f"is not an INT8 gate record ({type(exc).__name__}: {exc})") from None


def _summary(f: Fields, s: dict[str, Any], metric: str) -> Summary:
    def number(key: str) -> Any:
        return f.number(s, key, "summary", finite=False)

    return Summary(metric=metric, student=number(f"student_{metric}"), baseline=number(f"baseline_{metric}"),
                   teacher=number(f"teacher_{metric}"),
                   teacher_to_student_latency_ratio=number("teacher_to_student_latency_ratio"),
                   teacher_to_student_params_ratio=number("teacher_to_student_params_ratio"),
                   all_parity_passed=f.flag(s, "all_parity_passed", "summary"))


def _precision_row(f: Fields, r: Any, where: str, metric: str) -> PrecisionRow:
    gate_passed = f.flag(r, "gate_passed", where, optional=True)
    return PrecisionRow(target=f.text(r, "target", where), precision=f.text(r, "precision", where), metric=metric,
                        value=f.number(r, metric, where, finite=False),
                        delta_vs_fp32=f.number(r, "delta_vs_fp32", where, finite=False),
                        parity_passed=f.flag(r, "parity_passed", where),
                        parity_max_abs=f.number(r, "parity_max_abs", where, finite=False),
                        latency_median_ms=f.number(r, "latency_median_ms", where, minimum=0),
                        latency_p99_ms=f.number(r, "latency_p99_ms", where, minimum=0),
                        size_bytes=f.number(r, "size_bytes", where, minimum=0),
                        kept_in_float=tuple(f.texts(r, "kept_in_float", where, optional=True)),
                        kept_in_float_modules=tuple(f.texts(r, "kept_in_float_modules", where, optional=True)),
                        quantizer=f.text(r, "quantizer", where, optional=True),
                        float_layers=f.text(r, "float_layers", where, optional=True), gate_passed=gate_passed,
                        qat_iterations=f.number(r, "qat_iterations", where, optional=True, integer=True,
                                                minimum=0) or 0)


def _device_profile(f: Fields, d: Any, where: str) -> DeviceProfile:
    return DeviceProfile(device=f.text(d, "device", where), target=f.text(d, "target", where),
                         precision=f.text(d, "precision", where), latency=_latency(f, d, where),
                         throughput_fps=f.number(d, "throughput_fps", where, optional=True, minimum=0),
                         cov=f.number(d, "cov", where, optional=True, minimum=0),
                         protocol=f.mapping(d, "protocol", where, optional=True),
                         source=f.text(d, "source", where, optional=True, default=""))
