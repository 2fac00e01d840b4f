"""Run reports: ``report.json`` (everything measured) and ``report.md`` (the tables a person reads)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from compressor.core.errors import CompressError
from compressor.core.files import atomic_path, write_json


def read_report(folder: Path) -> dict[str, Any]:
    """The run's report.json; one-line error when missing or unreadable."""
    import json

    path = Path(folder) / "report.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CompressError(f"no report.json in {folder}: run 'compress run' first") from None
    except ValueError as exc:
        raise CompressError(f"{path} is not valid JSON ({exc})") from None


def merge_device_profile(report: dict[str, Any], profile_path: Path, device: str | None = None) -> dict[str, Any]:
    """Add a profile measured on a device (a bundle's profile step) to the report, replacing an older one
    for the same device, target and precision."""
    import json

    try:
        profile = json.loads(Path(profile_path).read_text())
        latency = {k: profile["latency_ms"][k] for k in ("median", "mean", "p90", "p99", "min", "max")}
    except FileNotFoundError:
        raise CompressError(f"device profile {profile_path} does not exist") from None
    except (ValueError, KeyError, TypeError):
        raise CompressError(f"{profile_path} is not a profile written by 'compress profile' or a bundle") from None
    row = {"device": device or profile.get("device") or profile.get("protocol", {}).get("host", {}).get("device", "device"),
           "target": profile.get("target", "?"), "precision": profile.get("precision", "?"), "latency_ms": latency,
           "throughput_fps": profile.get("throughput_fps"), "cov": profile.get("cov"),
           "protocol": profile.get("protocol", {}), "source": str(profile_path)}
    rows = [r for r in report.get("device_profiles", [])
            if (r["device"], r["target"], r["precision"]) != (row["device"], row["target"], row["precision"])]
    return {**report, "device_profiles": [*rows, row]}


def write_report(report: dict[str, Any], folder: Path) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` into ``folder`` atomically."""
    json_path = write_json(folder / "report.json", report)
    md_path = folder / "report.md"
    with atomic_path(md_path) as tmp:
        tmp.write_text(render_markdown(report))
    return json_path, md_path


def _fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) < 1e6 else f"{value:.3g}"
    return str(value)


def _precision_matrix(report: dict[str, Any], metric: str) -> list[str]:
    rows = report.get("precision_matrix") or []
    if not rows:
        return []
    lines = ["", "## Precision matrix (student)", "",
             f"| target | precision | {metric} | change vs FP32 | parity | median ms | p99 ms | size | kept in float |",
             "|---|---|---:|---:|---|---:|---:|---:|---|"]
    for r in rows:
        kept = ", ".join(r["kept_in_float"]) or "-"
        if r.get("float_layers") not in (None, "fp32") and r["kept_in_float"]:
            kept += f" (in {r['float_layers']})"
        gate = "" if r["gate_passed"] is None else (" (gate passed)" if r["gate_passed"] else " (gate FAILED)")
        gate += f"; after {r['qat_iterations']} QAT iterations" if r.get("qat_iterations") else ""
        precision = r["precision"] + (f" ({r['quantizer']})" if r.get("quantizer") else "")
        lines.append(f"| {r['target']} | {precision} | {r[metric]:.4f} | {r['delta_vs_fp32']:+.4f} | "
                     f"{'pass' if r['parity_passed'] else 'FAIL'} | {r['latency_median_ms']:.3f} | "
                     f"{r['latency_p99_ms']:.3f} | {r['size_bytes'] / 1024:.0f} KiB | {kept}{gate} |")
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: models table, artifacts table, summary."""
    metric = report["headline_metric"]
    models = report["models"]
    metric_keys = [k for k, v in next(iter(models.values()))["metric"].items()
                   if k != "images" and isinstance(v, (int, float))]  # nested details stay in report.json
    lines = [f"# {report['recipe']} ({'quick' if report.get('quick') else 'full'} run, seed {report['seed']})", "",
             f"Created {report['created']} with edge-compress {report['versions']['edge_compress']}, "
             f"torch {report['versions']['torch']}. Every number below was measured in this run.", "",
             "## Models", "",
             "| role | params | MACs | " + " | ".join(metric_keys) + " | metric via | origin |",
             "|---|---:|---:|" + "---:|" * len(metric_keys) + "---|---|"]
    for role, m in models.items():
        values = " | ".join(_fmt(m["metric"][k], 4) for k in metric_keys)
        lines.append(f"| {role} | {m['params']:,} | {m['macs'] / 1e9:.3f} G | {values} | {m['metric_engine']} | "
                     f"{m['origin']} |")
    lines += ["", "## Engines", "",
              f"| role | target | precision | size | parity max abs | parity | {metric} | median ms | p90 ms | "
              "p99 ms | samples/s |", "|---|---|---|---:|---:|---|---:|---:|---:|---:|---:|"]
    for a in report["artifacts"]:
        lat = a["latency_ms"]
        lines.append(f"| {a['role']} | {a['target']} | {a['precision']} | {a['size_bytes'] / 1024:.0f} KiB | "
                     f"{a['parity']['max_abs']:.2e} | {'pass' if a['parity']['passed'] else 'FAIL'}"
                     f"{' (task data)' if a['parity'].get('inputs') == 'task data' else ''} | "
                     f"{_fmt(a['metric'][metric], 4)} | {lat['median']:.3f} | {lat['p90']:.3f} | {lat['p99']:.3f} | "
                     f"{a['throughput_fps']:.1f} |")
    lines += _precision_matrix(report, metric)
    if report.get("device_profiles"):
        lines += ["", "## Measured on devices", "", "| device | target | precision | median ms | p90 ms | p99 ms | "
                  "samples/s | timer |", "|---|---|---|---:|---:|---:|---:|---|"]
        for d in report["device_profiles"]:
            lat = d["latency_ms"]
            lines.append(f"| {d['device']} | {d['target']} | {d['precision']} | {lat['median']:.3f} | {lat['p90']:.3f} | "
                         f"{lat['p99']:.3f} | {d['throughput_fps'] or 0:.1f} | {d['protocol'].get('timer', '')} |")
    s = report["summary"]
    lines += ["", "## Summary", "",
              f"- student {metric} {s[f'student_{metric}']:.4f} vs baseline (same steps, no KD) "
              f"{s[f'baseline_{metric}']:.4f}: {s['student_minus_baseline']:+.4f}",
              f"- teacher {metric} {s[f'teacher_{metric}']:.4f}",
              f"- teacher-to-student latency ratio {s['teacher_to_student_latency_ratio']:.2f}x, "
              f"parameter ratio {s['teacher_to_student_params_ratio']:.2f}x",
              f"- every engine matches PyTorch: {'yes' if s['all_parity_passed'] else 'NO'} (on random inputs over "
              "each input's range; INT8 engines, whose ranges are calibrated on the task's data, on samples of it)",
              f"- profile input {report['artifacts'][0]['profile_input']}, "
              f"{report['artifacts'][0]['protocol']['min_duration_s']} s minimum per engine",
              f"- wall time {report['wall_seconds']:.0f} s"]
    if report.get("bundle"):
        lines.append(f"- bundle: {report['bundle']}")
    if report.get("details_markdown"):  # a task's own section (e.g. per-class detection scores)
        lines += ["", report["details_markdown"].rstrip()]
    return "\n".join(lines) + "\n"
