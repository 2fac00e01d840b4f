"""Writing the run report: ``report.json`` (everything measured), ``report.md`` (the tables a person reads) and
``report.html`` (the same with charts, one self-contained page)."""
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
    """Write ``report.json``, ``report.md`` and ``report.html`` into ``folder``, each atomically; returns the
    first two (``report.html`` lies beside them)."""
    json_path = write_json(Path(folder) / "report.json", report.to_dict())
    md_path = Path(folder) / "report.md"
    with atomic_path(md_path) as tmp:
        tmp.write_text(render_markdown(report))
    write_html(report, folder)
    return json_path, md_path


def write_html(report: RunReport, folder: Path) -> Path:
    """Write ``report.html`` into ``folder`` atomically."""
    from compressor.distill.report.html import render_html

    path = Path(folder) / "report.html"
    with atomic_path(path) as tmp:
        tmp.write_text(render_html(report), encoding="utf-8")
    return path


def render_markdown(report: RunReport) -> str:
    """The report as Markdown: verdict, models, engines, precision matrix, device profiles, summary, task
    details."""
    from compressor.distill.report.verdict import verdict_sentences

    metric = report.headline_metric
    lines = [f"# {report.recipe} ({'quick' if report.quick else 'full'} run, seed {report.seed})", "",
             f"Created {report.created} with edge-compress {report.versions['edge_compress']}, "
             f"torch {report.versions['torch']}. Every number below was measured in this run"
             + (" (the INT8 accuracy-gate figures of reused engines: by the run that built them)"
                if any(e.reused and e.int8 for e in report.engines) else "") + ".", "",
             "## Verdict", "", " ".join(verdict_sentences(report)), ""]
    lines += models_table(report.models)
    lines += ["", *engines_table(report.engines, metric)]
    lines += _blank_before(measurement_warnings(report.engines))
    lines += _blank_before(reused_lines(report))
    lines += _blank_before(precision_matrix_table(report.precision_matrix, metric))
    if report.selection is not None:
        from compressor.distill.select import render_selection

        lines += ["", *render_selection(report.selection)]
    lines += _blank_before(device_profiles_table(report.device_profiles))
    lines += ["", *summary_lines(report)]
    if report.layers_markdown:  # where the time goes, by PyTorch module, and the precision audit
        lines += ["", report.layers_markdown.rstrip()]
    if report.details_markdown:  # a task's own section (e.g. per-class detection scores)
        lines += ["", report.details_markdown.rstrip()]
    return "\n".join(lines) + "\n"


def measurement_warnings(engines) -> list[str]:
    """Engines whose latency may not be trusted, and why (the profiler's warnings), as a Markdown list."""
    lines = [f"- {cell(e.role)} {cell(e.label)}: {cell(w)}" for e in engines for w in e.warnings]
    if not lines:
        return []
    return ["**Latency warnings** (these numbers were measured under noise; rerun on a quiet machine, or with "
            "`compress profile --isolate`):", "", *lines]


def reused_lines(report: RunReport) -> list[str]:
    """What this run took from earlier runs into its folder (stage cache; ``--fresh`` takes nothing), as a
    Markdown list: trainings, ONNX exports, engines (with the run that built each)."""
    lines = [f"- training of {cell(m.role)}" for m in report.models if m.training.get("reused")]
    lines += [f"- export {cell(name)} (built by the run of {cell(r.get('built_by_run', '?'))})"
              for name, r in report.reused_exports.items()]
    lines += [f"- engine {cell(e.role)} {cell(e.label)} (built by the run of {cell(e.reused.get('built_by_run', '?'))}"
              + ("; its accuracy-gate figures are from that run" if e.int8 else "") + ")"
              for e in report.engines if e.reused]
    if not lines:
        return []
    return ["**Reused** (inputs unchanged since an earlier run into this folder; parity, metrics and latency "
            "above were measured in this run; `--fresh` rebuilds everything):", "", *lines]


def _fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) < 1e6 else f"{value:.3g}"
    return cell(value)


def _blank_before(lines: list[str]) -> list[str]:
    return ["", *lines] if lines else []


def cell(value: Any) -> str:
    """``value`` as the text of one Markdown table cell: one line, its ``|`` escaped (a device name or a file
    name must not add columns or rows)."""
    text = " ".join("".join(c if c.isprintable() else " " for c in str(value)).split())
    return text.replace("|", "\\|")


# column names the report uses for engines; a task metric of the same name is labelled as the task's
REPORT_COLUMNS = {"role", "target", "precision", "size", "parity", "params", "MACs", "origin", "quantizer"}


def metric_label(key: str) -> str:
    """A task metric's column name: a metric called like an engine column (the tracking task's ``precision``,
    the share of frames within 20 px) is shown as ``precision (task metric)`` so the two are not confused."""
    return f"{key} (task metric)" if key in REPORT_COLUMNS else key


def models_table(models: tuple[ModelReport, ...]) -> list[str]:
    """The Models table: size, every numeric task metric, the engine it was measured through, origin."""
    metric_keys = [k for k, v in models[0].metric.items()
                   if k != "images" and isinstance(v, (int, float))]  # nested details stay in report.json
    lines = ["## Models", "",
             "| role | params | MACs | " + " | ".join(map(metric_label, metric_keys)) + " | metric via | origin |",
             "|---|---:|---:|" + "---:|" * len(metric_keys) + "---|---|"]
    for m in models:
        values = " | ".join(_fmt(m.metric.get(k, "-"), 4) for k in metric_keys)
        lines.append(f"| {cell(m.role)} | {m.params:,} | {m.macs / 1e9:.3f} G | {values} | "
                     f"{cell(m.metric_engine)} | {cell(m.origin)} |")
    return lines


def engines_table(engines: tuple[EngineReport, ...], metric: str) -> list[str]:
    """The Engines table; an INT8 engine's precision names its quantizer (``int8 (nncf)``)."""
    lines = ["## Engines", "",
             f"| role | target | precision | size | parity max abs | parity | {metric_label(metric)} | median ms | "
             "p90 ms | "
             "p99 ms | samples/s |", "|---|---|---|---:|---:|---|---:|---:|---:|---:|---:|"]
    for e in engines:
        lat = e.latency
        precision = e.precision + (f" ({e.quantizer})" if e.quantizer else "")
        lines.append(f"| {cell(e.role)} | {cell(e.target)} | {cell(precision)} | "
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


def precision_matrix_table(rows: tuple[PrecisionRow, ...], metric: str) -> list[str]:
    """The student on every target x precision (empty when the report has none)."""
    if not rows:
        return []
    lines = ["## Precision matrix (student)", "",
             f"| target | precision | {metric_label(metric)} | change vs FP32 | parity | median ms | p99 ms | size | "
             "kept in float |",
             "|---|---|---:|---:|---|---:|---:|---:|---|"]
    for r in rows:
        kept = cell(", ".join(r.kept_in_float_modules or r.kept_in_float)) or "-"
        if r.float_layers not in (None, "fp32") and r.kept_in_float:
            kept += f" (in {r.float_layers})"
        gate = "" if r.gate_passed is None else (" (gate passed)" if r.gate_passed else " (gate FAILED)")
        gate += f"; after {r.qat_iterations} QAT iterations" if r.qat_iterations else ""
        precision = cell(r.precision + (f" ({r.quantizer})" if r.quantizer else ""))
        lines.append(f"| {cell(r.target)} | {precision} | {r.value:.4f} | {r.delta_vs_fp32:+.4f} | "
                     f"{'pass' if r.parity_passed else 'FAIL'} | {r.latency_median_ms:.3f} | "
                     f"{r.latency_p99_ms:.3f} | {r.size_bytes / 1024:.0f} KiB | {kept}{gate} |")
    return lines


def device_profiles_table(profiles: tuple[DeviceProfile, ...]) -> list[str]:
    """Latency measured on devices (empty when none was merged)."""
    if not profiles:
        return []
    lines = ["## Measured on devices", "", "| device | target | precision | median ms | p90 ms | p99 ms | "
             "samples/s | timer |", "|---|---|---|---:|---:|---:|---:|---|"]
    for d in profiles:
        lat = d.latency
        lines.append(f"| {cell(d.device)} | {cell(d.target)} | {cell(d.precision)} | {lat.median:.3f} | "
                     f"{lat.p90:.3f} | {lat.p99:.3f} | {d.throughput_fps or 0:.1f} | "
                     f"{cell(d.protocol.get('timer', ''))} |")
    return lines


def host_of(report: RunReport) -> dict[str, Any]:
    """The report's host; a processor left empty by older runs is taken from the profiles' protocol."""
    host = dict(report.host)
    if not host.get("processor"):
        for e in report.engines:
            found = e.protocol.get("host", {}).get("processor") if isinstance(e.protocol.get("host"), dict) else None
            if found:
                host["processor"] = found
                break
    return host


PRECISION_WORDS = {"fp32": "fp32", "bf16": "bf16 autocast", "fp16": "fp16 autocast with loss scaling"}


def training_setup(models: tuple[ModelReport, ...]) -> str:
    """How the run trained, in one line: device, precision, processes (``training.setup`` of the trained roles),
    then the roles whose finished training was reused from an earlier run and those resumed after a kill, e.g.
    ``cpu, bf16 autocast, 1 process; reused from an earlier run: teacher; student resumed at iteration 40 of
    500``. Empty when no role was trained in this run (or the report predates the record)."""
    trained = [m for m in models if isinstance(m.training.get("setup"), dict)]
    if not trained:
        return ""
    setup = trained[0].training["setup"]
    processes = setup.get("processes", 1)
    count = processes if isinstance(processes, int) and not isinstance(processes, bool) else 1
    precision = str(setup.get("precision", "fp32"))
    parts = [str(setup.get("device", "cpu")), PRECISION_WORDS.get(precision, precision),
             f"{count} process" + ("es" if count != 1 else "")
             + (f" ({setup['backend']})" if count > 1 and setup.get("backend") else "")]
    text = ", ".join(parts)
    reused = [m.role for m in trained if m.training.get("reused")]
    if reused:
        text += f"; reused from an earlier run: {', '.join(reused)}"
    for m in trained:
        at = m.training.get("resumed_at")
        if at is not None:
            text += f"; {m.role} resumed at iteration {at} of {m.training.get('iterations', '?')}"
    return text


def summary_lines(report: RunReport) -> list[str]:
    """The Summary: student vs baseline vs teacher, speed-up, parity, profile protocol, host, wall time, bundle."""
    s, metric, first = report.summary, report.headline_metric, report.engines[0]
    host = host_of(report)
    lines = ["## Summary", "",
             f"- student {metric} {s.student:.4f} vs baseline (same steps, no KD) "
             f"{s.baseline:.4f}: {s.student_minus_baseline:+.4f}",
             f"- teacher {metric} {s.teacher:.4f}",
             f"- teacher-to-student latency ratio {s.teacher_to_student_latency_ratio:.2f}x, "
             f"parameter ratio {s.teacher_to_student_params_ratio:.2f}x",
             f"- every engine matches PyTorch: {'yes' if s.all_parity_passed else 'NO'} (on random inputs over "
             "each input's range; INT8 engines, whose ranges are calibrated on the task's data, on samples of it)",
             f"- profile input {list(first.profile_input)}, "
             f"{first.protocol.get('min_duration_s', '?')} s minimum per engine",
             "- host " + (host.get("processor") or host.get("machine") or "?")
             + (f", {host['cpus']} CPUs" if host.get("cpus") else ""),
             f"- wall time {report.wall_seconds:.0f} s"]
    setup = training_setup(report.models)
    if setup:
        lines.insert(-1, f"- training: {cell(setup)}")
    if report.bundle:
        lines.append(f"- bundle: {report.bundle}")
    return lines
