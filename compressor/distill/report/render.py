"""Writing the run report: ``report.json`` (everything measured) and ``report.md`` (the tables a person reads)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from compressor.core.files import atomic_path, write_json
from compressor.distill.report.model import (
    DeviceProfile,
    EngineReport,
    ModelReport,
    PrecisionRow,
    RunReport,
)


def write_report(report: RunReport, folder: Path) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` into ``folder`` atomically."""
    json_path = write_json(Path(folder) / "report.json", report.to_dict())
    md_path = Path(folder) / "report.md"
    with atomic_path(md_path) as tmp:
        tmp.write_text(render_markdown(report))
    return json_path, md_path


def render_markdown(report: RunReport) -> str:
    """The report as Markdown: models, engines, precision matrix, device profiles, summary, task details."""
    metric = report.headline_metric
    lines = [f"# {report.recipe} ({'quick' if report.quick else 'full'} run, seed {report.seed})", "",
             f"Created {report.created} with edge-compress {report.versions['edge_compress']}, "
             f"torch {report.versions['torch']}. Every number below was measured in this run.", ""]
    lines += _models(report.models)
    lines += _engines(report.engines, metric)
    lines += _precision_matrix(report.precision_matrix, metric)
    lines += _device_profiles(report.device_profiles)
    lines += _summary(report)
    if report.details_markdown:  # a task's own section (e.g. per-class detection scores)
        lines += ["", report.details_markdown.rstrip()]
    return "\n".join(lines) + "\n"


def _fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) < 1e6 else f"{value:.3g}"
    return _cell(value)


def _cell(value: Any) -> str:
    """``value`` as the text of one Markdown table cell: one line, its ``|`` escaped (a device name or a file
    name must not add columns or rows)."""
    text = " ".join("".join(c if c.isprintable() else " " for c in str(value)).split())
    return text.replace("|", "\\|")


def _models(models: tuple[ModelReport, ...]) -> list[str]:
    metric_keys = [k for k, v in models[0].metric.items()
                   if k != "images" and isinstance(v, (int, float))]  # nested details stay in report.json
    lines = ["## Models", "",
             "| role | params | MACs | " + " | ".join(metric_keys) + " | metric via | origin |",
             "|---|---:|---:|" + "---:|" * len(metric_keys) + "---|---|"]
    for m in models:
        values = " | ".join(_fmt(m.metric.get(k, "-"), 4) for k in metric_keys)
        lines.append(f"| {_cell(m.role)} | {m.params:,} | {m.macs / 1e9:.3f} G | {values} | "
                     f"{_cell(m.metric_engine)} | {_cell(m.origin)} |")
    return lines


def _engines(engines: tuple[EngineReport, ...], metric: str) -> list[str]:
    lines = ["", "## Engines", "",
             f"| role | target | precision | size | parity max abs | parity | {metric} | median ms | p90 ms | "
             "p99 ms | samples/s |", "|---|---|---|---:|---:|---|---:|---:|---:|---:|---:|"]
    for e in engines:
        lat = e.latency
        lines.append(f"| {_cell(e.role)} | {_cell(e.target)} | {_cell(e.precision)} | "
                     f"{e.size_bytes / 1024:.0f} KiB | "
                     f"{e.parity.max_abs:.2e} | {_parity_verdict(e.parity)} | "
                     f"{_fmt(e.metric[metric], 4)} | {lat.median:.3f} | {lat.p90:.3f} | {lat.p99:.3f} | "
                     f"{e.throughput_fps:.1f} |")
    return lines


def _parity_verdict(parity) -> str:
    """``pass`` / ``FAIL``, with what it was judged on when that is not random inputs element by element."""
    notes = ["task data"] if parity.inputs == "task data" else []
    if parity.sqnr_db is not None:
        notes.append(f"SQNR {parity.sqnr_db:.1f} dB")
    return ("pass" if parity.passed else "FAIL") + (f" ({', '.join(notes)})" if notes else "")


def _precision_matrix(rows: tuple[PrecisionRow, ...], metric: str) -> list[str]:
    if not rows:
        return []
    lines = ["", "## Precision matrix (student)", "",
             f"| target | precision | {metric} | change vs FP32 | parity | median ms | p99 ms | size | kept in float |",
             "|---|---|---:|---:|---|---:|---:|---:|---|"]
    for r in rows:
        kept = _cell(", ".join(r.kept_in_float)) or "-"
        if r.float_layers not in (None, "fp32") and r.kept_in_float:
            kept += f" (in {r.float_layers})"
        gate = "" if r.gate_passed is None else (" (gate passed)" if r.gate_passed else " (gate FAILED)")
        gate += f"; after {r.qat_iterations} QAT iterations" if r.qat_iterations else ""
        precision = _cell(r.precision + (f" ({r.quantizer})" if r.quantizer else ""))
        lines.append(f"| {_cell(r.target)} | {precision} | {r.value:.4f} | {r.delta_vs_fp32:+.4f} | "
                     f"{'pass' if r.parity_passed else 'FAIL'} | {r.latency_median_ms:.3f} | "
                     f"{r.latency_p99_ms:.3f} | {r.size_bytes / 1024:.0f} KiB | {kept}{gate} |")
    return lines


def _device_profiles(profiles: tuple[DeviceProfile, ...]) -> list[str]:
    if not profiles:
        return []
    lines = ["", "## Measured on devices", "", "| device | target | precision | median ms | p90 ms | p99 ms | "
             "samples/s | timer |", "|---|---|---|---:|---:|---:|---:|---|"]
    for d in profiles:
        lat = d.latency
        lines.append(f"| {_cell(d.device)} | {_cell(d.target)} | {_cell(d.precision)} | {lat.median:.3f} | "
                     f"{lat.p90:.3f} | {lat.p99:.3f} | {d.throughput_fps or 0:.1f} | "
                     f"{_cell(d.protocol.get('timer', ''))} |")
    return lines


def _summary(report: RunReport) -> list[str]:
    s, metric, first = report.summary, report.headline_metric, report.engines[0]
    lines = ["", "## Summary", "",
             f"- student {metric} {s.student:.4f} vs baseline (same steps, no KD) "
             f"{s.baseline:.4f}: {s.student_minus_baseline:+.4f}",
             f"- teacher {metric} {s.teacher:.4f}",
             f"- teacher-to-student latency ratio {s.teacher_to_student_latency_ratio:.2f}x, "
             f"parameter ratio {s.teacher_to_student_params_ratio:.2f}x",
             f"- every engine matches PyTorch: {'yes' if s.all_parity_passed else 'NO'} (on random inputs over "
             "each input's range; INT8 engines, whose ranges are calibrated on the task's data, on samples of it)",
             f"- profile input {list(first.profile_input)}, "
             f"{first.protocol.get('min_duration_s', '?')} s minimum per engine",
             f"- wall time {report.wall_seconds:.0f} s"]
    if report.bundle:
        lines.append(f"- bundle: {report.bundle}")
    return lines
