"""``report.html``: the run report as one self-contained page (inline CSS and SVG; no script, font, image or
link is fetched). The page is a verdict followed by a list of sections; a section is a title and an HTML
fragment, made by one renderer each (``SECTIONS``), so a new part of the report is one more renderer, and a
part written as Markdown joins through :func:`markdown_section`."""
from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Any, Callable, Iterable, Sequence

from compressor.distill.report import render
from compressor.distill.report.markdown_html import markdown_to_html
from compressor.distill.report.model import EngineReport, RunReport
from compressor.distill.report.svg import (
    PALETTE,
    ROLE_COLOURS,
    Box,
    Point,
    Series,
    box_chart,
    line_chart,
    pareto_front,
    scatter_chart,
)
from compressor.distill.report.verdict import choose_engine, verdict_sentences


@dataclass(frozen=True)
class Section:
    """One part of the page: ``title`` (an ``<h2>``) and its HTML ``body``; ``anchor`` names it in the page."""

    title: str
    body: str
    anchor: str = ""

    def html(self) -> str:
        anchor = self.anchor or "".join(c if c.isalnum() else "-" for c in self.title.lower())
        return f'<section id="{escape(anchor)}"><h2>{escape(self.title)}</h2>\n{self.body}\n</section>'


def markdown_section(title: str, markdown: str | Iterable[str], anchor: str = "") -> Section:
    """A section from Markdown (text or lines, as the ``render_*`` functions return); a leading ``## title``
    line is dropped, since the section has its own."""
    lines = markdown.splitlines() if isinstance(markdown, str) else list(markdown)
    while lines and (not lines[0].strip() or lines[0].lstrip().startswith("## ")):
        lines.pop(0)
    return Section(title, markdown_to_html("\n".join(lines)), anchor)


TARGET_COLOURS = {"onnxruntime": "#2563eb", "openvino": "#9333ea", "tensorrt": "#16a34a"}


def engine_colour(e: EngineReport) -> str:
    """Students coloured by target; teacher and baseline by role."""
    if e.role != "student":
        return ROLE_COLOURS.get(e.role, PALETTE[-1])
    return TARGET_COLOURS.get(e.target, PALETTE[len(e.target) % len(PALETTE)])


def engine_name(e: EngineReport) -> str:
    """``student: openvino int8 (nncf)``."""
    return f"{e.role}: {e.label}"


def latency_section(report: RunReport) -> Section:
    """Every engine's latency distribution (the samples too, when the profile kept them)."""
    chosen = choose_engine(report)
    boxes = []
    for e in report.engines:
        lat = e.latency
        samples = tuple(float(v) for v in e.profile.get("samples_ms", ()) if isinstance(v, (int, float)))
        boxes.append(Box(engine_name(e), lat.min, lat.median, lat.p90, lat.p99, lat.max, engine_colour(e),
                         samples, emphasis=chosen is not None and e is chosen.engine))
    note = ("<p class=note>Line: min to p99; box: median to p90 (thick edge at the median); open dot: the slowest "
            "call. One synchronous call per sample, on this host.</p>")
    return Section("Latency per engine", box_chart("latency", boxes) + note, "latency")


def pareto_section(report: RunReport) -> Section | None:
    """The student's headline metric against median latency on every engine, its Pareto front marked."""
    metric = report.headline_metric
    engines = [e for e in report.engines if _finite(e.metric.get(metric))]
    if not engines:
        return None
    students = [e for e in engines if e.role == "student"]
    front = {id(students[i]) for i in pareto_front([(e.latency.median, e.metric[metric]) for e in students])}
    if not students:
        return None
    chosen = choose_engine(report)
    points = [Point(e.label, e.latency.median, float(e.metric[metric]), engine_colour(e), id(e) in front,
                    emphasis=chosen is not None and e is chosen.engine) for e in students]
    names = ", ".join(escape(e.label) for e in students if id(e) in front)
    others = "; ".join(f"{escape(engine_name(e))}: {metric} {e.metric[metric]:.4g} at {e.latency.median:.3g} ms"
                       for e in engines if e.role != "student")
    note = (f"<p class=note>The student on every target x precision. Green rings and the dashed line: the Pareto "
            f"front (no other engine is both faster and at least as accurate): {names}."
            + (f" For reference (off the chart, to keep the student's differences readable): {others}." if others
               else "") + "</p>")
    chart = scatter_chart("pareto", points, x_label="median latency (ms)", y_label=metric)
    return Section(f"{metric} against latency", chart + note, "pareto")


def training_section(report: RunReport) -> Section | None:
    """The loss curve of each trained role (mean loss per window of iterations), one panel each: the roles
    minimise different objectives, so their values are not compared on one axis."""
    charts, untrained = [], []
    for m in report.models:
        curve = [v for v in m.training.get("loss_curve", ()) if isinstance(v, (int, float))]
        iterations = m.training.get("iterations")
        if not curve or not isinstance(iterations, int):
            untrained.append(f"{escape(m.role)} ({escape(m.origin)})")
            continue
        xs = tuple(min(50 * (i + 1), iterations) for i in range(len(curve)))
        seconds = m.training.get("seconds")
        title = f"{m.role}: {iterations} it" + (f", {seconds:.0f} s" if isinstance(seconds, (int, float)) else "")
        charts.append(line_chart(f"training-{m.role}", [Series(m.role, xs, tuple(curve),
                                                               ROLE_COLOURS.get(m.role, PALETTE[0]))],
                                 x_label="iteration", y_label="loss", title=title))
    if not charts:
        return None
    note = "<p class=note>Mean training loss per window of 50 iterations; each role has its own objective.</p>"
    setup = render.training_setup(report.models)
    if setup:
        note = f"<p class=training-setup>Training: {escape(setup)}.</p>" + note
    if untrained:
        note += f"<p class=note>Not trained in this run: {', '.join(untrained)}.</p>"
    return Section("Training", '<div class="row">' + "".join(charts) + "</div>" + note, "training")


def engines_section(report: RunReport) -> Section:
    """The engines table of report.md."""
    return markdown_section("Engines", render.engines_table(report.engines, report.headline_metric), "engines")


def precision_section(report: RunReport) -> Section | None:
    """The precision matrix of report.md."""
    lines = render.precision_matrix_table(report.precision_matrix, report.headline_metric)
    return markdown_section("Precision matrix (student)", lines, "precision-matrix") if lines else None


def models_section(report: RunReport) -> Section:
    """The models table and the summary of report.md."""
    return markdown_section("Models", [*render.models_table(report.models), "", *render.summary_lines(report)],
                            "models")


def devices_section(report: RunReport) -> Section | None:
    """Latency measured on devices, when merged."""
    lines = render.device_profiles_table(report.device_profiles)
    return markdown_section("Measured on devices", lines, "devices") if lines else None


def task_section(report: RunReport) -> Section | None:
    """The task's own findings (its Markdown)."""
    if not report.details_markdown:
        return None
    return markdown_section("Task details", report.details_markdown, "task")


def warnings_section(report: RunReport) -> Section | None:
    """Engines whose latency may not be trusted, and why."""
    lines = render.measurement_warnings(report.engines)
    return markdown_section("Latency warnings", lines, "warnings") if lines else None


def selection_section(report: RunReport) -> Section | None:
    """Which student engine the bundle holds, among which candidates, and why (deploy.select)."""
    if report.selection is None:
        return None
    from compressor.distill.select import render_selection

    return markdown_section("Selected engine", render_selection(report.selection), "selection")


def reused_section(report: RunReport) -> Section | None:
    """What this run took from earlier runs into its folder (the stage cache), as report.md lists it."""
    lines = render.reused_lines(report)
    return markdown_section("Reused", lines, "reused") if lines else None


def layers_section(report: RunReport) -> Section | None:
    """Per-layer time by PyTorch module and the precision audit (its Markdown)."""
    if not report.layers_markdown:
        return None
    return markdown_section("Where the time goes, and the precision each layer ran", report.layers_markdown,
                            "layers")


PER_ENGINE_PROTOCOL = ("runtime", "runtime_version", "warmup_calls", "timed_s", "host")


def protocol_section(report: RunReport) -> Section:
    """How every number was measured: the host, versions, the profile protocol and what varied per engine."""
    host = render.host_of(report)
    rows = [("recipe", f"{report.recipe} ({report.recipe_source})"), ("task", report.task),
            ("run", f"{'quick' if report.quick else 'full'}, seed {report.seed}, {report.wall_seconds:.0f} s wall"),
            ("created", report.created),
            ("host", ", ".join(f"{k} {v}" for k, v in host.items() if v not in (None, ""))),
            ("versions", ", ".join(f"{k} {v}" for k, v in report.versions.items()))]
    inputs = sorted({", ".join(e.profile_input) for e in report.engines})
    rows.append(("profile input", "; ".join(inputs)))
    common = _common_protocol(report.engines)
    rows += [(f"protocol: {k}", _plain(v)) for k, v in common.items()]
    if report.bundle:
        rows.append(("bundle", report.bundle))
    table = "<table class=kv><tbody>" + "".join(
        f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in rows) + "</tbody></table>"
    per_engine = ["| engine | runtime | version | CoV | samples/s |", "|---|---|---|---:|---:|"]
    for e in report.engines:
        p = e.protocol
        per_engine.append(f"| {render.cell(engine_name(e))} | {render.cell(p.get('runtime', '-'))} | "
                          f"{render.cell(p.get('runtime_version', '-'))} | {e.cov * 100:.1f} % | "
                          f"{e.throughput_fps:.1f} |")
    return Section("Protocol and host", table + markdown_to_html("\n".join(per_engine)), "protocol")


def _common_protocol(engines: Sequence[EngineReport]) -> dict[str, Any]:
    """Protocol entries every engine shares (those that differ are shown per engine)."""
    first = engines[0].protocol
    return {k: v for k, v in first.items()
            if k not in PER_ENGINE_PROTOCOL and all(e.protocol.get(k) == v for e in engines)}


def _plain(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_plain(v)}" for k, v in value.items())
    return "-" if value is None else str(value)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value \
        and abs(value) != float("inf")


SectionRenderer = Callable[[RunReport], "Section | None"]

SECTIONS: tuple[SectionRenderer, ...] = (warnings_section, latency_section, pareto_section, training_section,
                                         engines_section, precision_section, selection_section, layers_section,
                                         models_section, reused_section, devices_section, task_section)
CLOSING_SECTIONS: tuple[SectionRenderer, ...] = (protocol_section,)


def verdict_html(report: RunReport) -> str:
    """The verdict paragraph at the top of the page."""
    return '<div class="verdict" id="verdict"><h2>Verdict</h2><p>' + " ".join(
        escape(s) for s in verdict_sentences(report)) + "</p></div>"


def render_html(report: RunReport, extra: Sequence[Section] = ()) -> str:
    """The whole page: title, verdict, every section of ``SECTIONS``, then ``extra`` (sections made elsewhere,
    e.g. per-layer tables), then the protocol."""
    sections = [s for s in (r(report) for r in SECTIONS) if s is not None]
    sections += list(extra)
    sections += [s for s in (r(report) for r in CLOSING_SECTIONS) if s is not None]
    title = f"{report.recipe} ({'quick' if report.quick else 'full'} run, seed {report.seed})"
    contents = " · ".join(f'<a href="#{escape(_anchor(s))}">{escape(s.title)}</a>' for s in sections)
    return page(title, f"<p class=sub>Created {escape(report.created)} with edge-compress "
                       f"{escape(str(report.versions.get('edge_compress', '?')))}. Every number was measured in this "
                       f"run.</p>\n{verdict_html(report)}\n<nav>{contents}</nav>\n"
                       + "\n".join(s.html() for s in sections))


def _anchor(section: Section) -> str:
    return section.anchor or "".join(c if c.isalnum() else "-" for c in section.title.lower())


STYLE = """
:root{color-scheme:light}
body{margin:0;background:#f3f4f6;color:#111827;font:14px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif}
main{max-width:1040px;margin:0 auto;padding:24px 28px 48px;background:#fff;min-height:100vh;
box-shadow:0 0 0 1px #e5e7eb}
h1{font-size:24px;margin:8px 0 2px}
h2{font-size:18px;margin:0 0 10px;padding-bottom:4px;border-bottom:1px solid #e5e7eb}
h3{font-size:15px;margin:14px 0 6px}
.sub{color:#6b7280;margin:0 0 16px}
.verdict{background:#eff6ff;border:1px solid #bfdbfe;border-left:5px solid #2563eb;border-radius:6px;
padding:12px 16px;margin:0 0 14px}
.verdict h2{border:0;margin:0 0 4px;padding:0}
.verdict p{margin:0;font-size:15px}
nav{font-size:13px;color:#6b7280;margin:0 0 18px}
nav a{color:#2563eb;text-decoration:none}
section{margin:26px 0}
table{border-collapse:collapse;width:100%;font-size:12.5px;margin:6px 0 10px}
th,td{padding:4px 8px;border-bottom:1px solid #e5e7eb;text-align:left;vertical-align:top}
thead th{background:#f9fafb;border-bottom:2px solid #d1d5db;white-space:nowrap}
tbody tr:nth-child(even){background:#fafafa}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
table.kv th{width:190px;background:#f9fafb;font-weight:600}
svg.chart{display:block;max-width:100%;height:auto;background:#fff}
.row{display:flex;flex-wrap:wrap;gap:12px}
.row svg.chart{border:1px solid #f3f4f6;border-radius:4px}
.note{color:#6b7280;font-size:12.5px;margin:4px 0}
code{background:#f3f4f6;padding:0 3px;border-radius:3px}
.better{color:#15803d}.worse{color:#b91c1c}
"""


POLICY = "default-src 'none'; style-src 'unsafe-inline'"  # the page may load nothing at all


def page(title: str, body: str) -> str:
    """A complete HTML page with the report's style; nothing in it is fetched from elsewhere."""
    return ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            '<meta name=viewport content="width=device-width,initial-scale=1">'
            f"<meta http-equiv=Content-Security-Policy content=\"{POLICY}\">"
            f"<title>{escape(title)}</title><style>{STYLE}</style></head>\n"
            f"<body><main><h1>{escape(title)}</h1>\n{body}\n</main></body></html>\n")
