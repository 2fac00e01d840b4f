"""Two runs side by side (``compress report RUN --compare OTHER``): headline metrics, each engine's latency and
metric in both, and their differences; as a dict, as terminal text and as one HTML page."""
from __future__ import annotations

import math
from typing import Any

from compressor.distill.report.html import engine_colour, page
from compressor.distill.report.markdown_html import markdown_to_html
from compressor.distill.report.model import EngineReport, RunReport
from compressor.distill.report.render import cell
from compressor.distill.report.svg import Box, box_chart
from compressor.distill.report.verdict import choose_engine

EngineKey = tuple[str, str, str, str]


def engine_key(e: EngineReport) -> EngineKey:
    """What makes two runs' engines the same engine: role, target, precision and quantizer."""
    return (e.role, e.target, e.precision, e.quantizer or "")


def _metric(e: EngineReport | None, metric: str) -> float | None:
    value = None if e is None else e.metric.get(metric)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)) else b - a


def compare_reports(run: RunReport, other: RunReport, run_name: str, other_name: str) -> dict[str, Any]:
    """The comparison: headline numbers of both runs, then one row per engine found in either (``None`` where a
    run lacks it); ``other - run`` differences and ``other / run`` latency ratios."""
    metric = run.headline_metric
    other_metric = other.headline_metric
    shown = metric if metric == other_metric else f"{metric} / {other_metric}"
    headline = []
    for name, a, b in (
            (f"student {shown}", run.summary.student, other.summary.student),
            (f"baseline {shown}", run.summary.baseline, other.summary.baseline),
            (f"teacher {shown}", run.summary.teacher, other.summary.teacher),
            ("student minus baseline", run.summary.student_minus_baseline, other.summary.student_minus_baseline),
            ("teacher-to-student latency ratio", run.summary.teacher_to_student_latency_ratio,
             other.summary.teacher_to_student_latency_ratio),
            ("wall seconds", run.wall_seconds, other.wall_seconds)):
        headline.append({"name": name, "run": a, "other": b, "difference": _difference(a, b)})
    mine = {engine_key(e): e for e in run.engines}
    theirs = {engine_key(e): e for e in other.engines}
    keys = list(mine) + [k for k in theirs if k not in mine]
    engines = []
    for key in keys:
        a, b = mine.get(key), theirs.get(key)
        la, lb = (None if e is None else e.latency.median for e in (a, b))
        engines.append({"role": key[0], "target": key[1], "precision": key[2], "quantizer": key[3] or None,
                        "run_median_ms": la, "other_median_ms": lb,
                        "latency_ratio": lb / la if la and lb is not None else None,
                        f"run_{metric}": _metric(a, metric), f"other_{metric}": _metric(b, other_metric),
                        "metric_difference": _difference(_metric(a, metric), _metric(b, metric))})
    chosen = [choose_engine(r) for r in (run, other)]
    return {"metric": metric, "other_metric": other_metric, "run": run_name, "other": other_name,
            "same_recipe": run.recipe == other.recipe, "recipes": [run.recipe, other.recipe],
            "hosts": [run.host, other.host],
            "verdicts": [None if c is None else c.engine.label for c in chosen],
            "headline": headline, "engines": engines}


def _num(value: float | None, digits: int = 5) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.4g}"


def comparison_markdown(c: dict[str, Any]) -> str:
    """The comparison as Markdown tables (the terminal shows it; the HTML page converts it)."""
    metric = c["metric"]
    lines = [f"run: {c['run']} ({c['recipes'][0]}); other: {c['other']} ({c['recipes'][1]})"]
    if not c["same_recipe"]:
        lines.append("(different recipes: engines are matched by role, target, precision and quantizer)")
    lines += [f"deploy: {c['verdicts'][0]} in run, {c['verdicts'][1]} in other", "", "## Headline", "",
              "| | run | other | other - run |", "|---|---:|---:|---:|"]
    lines += [f"| {cell(h['name'])} | {_num(h['run'])} | {_num(h['other'])} | {_signed(h['difference'])} |"
              for h in c["headline"]]
    lines += ["", "## Engines", "",
              f"| engine | run median ms | other median ms | other / run | run {metric} | other {c['other_metric']} | "
              "other - run |", "|---|---:|---:|---:|---:|---:|---:|"]
    for e in c["engines"]:
        label = f"{e['role']}: {e['target']} {e['precision']}" + (f" ({e['quantizer']})" if e["quantizer"] else "")
        ratio = "-" if e["latency_ratio"] is None else f"{e['latency_ratio']:.3g}x"
        lines.append(f"| {cell(label)} | {_num(e['run_median_ms'])} | {_num(e['other_median_ms'])} | {ratio} | "
                     f"{_num(e[f'run_{metric}'])} | {_num(e[f'other_{metric}'])} | "
                     f"{_signed(e['metric_difference'])} |")
    return "\n".join(lines) + "\n"


def comparison_html(c: dict[str, Any], run: RunReport, other: RunReport) -> str:
    """The comparison as one self-contained page: the tables and both runs' latency on one axis."""
    boxes = []
    for name, report in (("run", run), ("other", other)):
        for e in report.engines:
            lat = e.latency
            boxes.append((engine_key(e), name, Box(f"{name}: {e.role}: {e.label}", lat.min, lat.median, lat.p90,
                                                   lat.p99, lat.max, engine_colour(e) if name == "run" else "#9ca3af")))
    order = {k: i for i, k in enumerate(e_key for e_key, _, _ in boxes)}
    boxes.sort(key=lambda item: (order[item[0]], item[1] != "run"))
    chart = box_chart("compare-latency", [b for _, _, b in boxes])
    body = (markdown_to_html(comparison_markdown(c)) + "<section id=latency><h2>Latency, run and other</h2>" + chart
            + "<p class=note>Coloured: run; grey: other. Line: min to p99; box: median to p90.</p></section>")
    return page(f"{c['run']} against {c['other']}", body)
