"""report.html from fixed numbers: self-contained, every chart holding its data, the verdict; the engine choice,
the Pareto front, the Markdown converter, ``compress report --compare``; and, where Chromium is installed, the
page drawn in a browser with the network shut."""
from __future__ import annotations

import dataclasses
import json

import pytest

from compressor.distill.report.build import processor_name
from compressor.distill.report.html import markdown_section, render_html
from compressor.distill.report.markdown_html import markdown_to_html
from compressor.distill.report.read import read_report
from compressor.distill.report.render import render_markdown, write_report
from compressor.distill.report.screenshot import (
    charts_in,
    chromium,
    external_references,
)
from compressor.distill.report.svg import nice_ticks, pareto_front
from compressor.distill.report.verdict import choose_engine, verdict_sentences
from tests.distill.test_report import ENGINES, report  # noqa: F401  (the fixture)
from tests.support import tree_state

CURVES = {"teacher": [2.0, 1.0, 0.5, 0.3], "student": [0.9, 0.6, 0.5], "baseline": [0.8, 0.7, 0.65]}


@pytest.fixture
def trained(report):  # noqa: F811
    models = tuple(dataclasses.replace(m, training={"iterations": 50 * len(CURVES[m.role]), "seconds": 3.0,
                                                    "loss_curve": CURVES[m.role]}) for m in report.models)
    return dataclasses.replace(report, models=models)


def test_the_page_loads_nothing_from_anywhere(trained):
    html = render_html(trained)
    assert external_references(html) == []
    assert "http://" not in html and "https://" not in html and "<script" not in html
    assert "Content-Security-Policy" in html and "default-src 'none'" in html


def test_every_chart_holds_its_data(trained):
    charts = {c.chart_id: c for c in charts_in(render_html(trained))}
    assert sorted(charts) == ["latency", "pareto", "training-baseline", "training-student", "training-teacher"]
    assert charts["latency"].declared == len(ENGINES) and charts["latency"].marks == 2 * len(ENGINES)
    assert charts["pareto"].declared == charts["pareto"].marks == 4  # the student on four target x precision
    for role in CURVES:
        assert charts[f"training-{role}"].marks == 1
        assert charts[f"training-{role}"].svg.count("<circle") == len(CURVES[role])


def test_an_untrained_role_is_named_not_drawn(trained):
    teacher = dataclasses.replace(trained.models[0], training={}, origin="published checkpoint")
    html = render_html(dataclasses.replace(trained, models=(teacher, *trained.models[1:])))
    assert "training-teacher" not in {c.chart_id for c in charts_in(html)}
    assert "Not trained in this run: teacher (published checkpoint)" in html


def test_the_verdict_is_the_fastest_engine_within_the_budget(trained):
    choice = choose_engine(trained)
    # openvino int8 is faster but failed its gate and parity; onnxruntime int8 is 0.2 below FP32, budget 0.5
    assert (choice.engine.target, choice.engine.precision, choice.engine.quantizer) == ("onnxruntime", "int8", "qdq")
    assert choice.budget == 0.5
    text = " ".join(verdict_sentences(trained))
    assert text.startswith("Deploy the student on onnxruntime int8 (qdq): 1 ms median, 1.5 ms p99")
    assert "8.0x faster than the teacher on onnxruntime fp32 (8 ms)" in text
    assert "2.0x faster than the student on onnxruntime fp32" in text
    assert "-0.2 against the FP32 student (budget 0.5)" in text
    html = render_html(trained)
    assert html.index('id="verdict"') < html.index('data-chart="latency"')
    assert "Deploy the student on onnxruntime int8 (qdq)" in html


def test_a_tighter_budget_picks_a_float_engine(trained):
    engines = tuple(dataclasses.replace(e, int8=dataclasses.replace(e.int8, budget=0.05)) if e.int8 else e
                    for e in trained.engines)
    choice = choose_engine(dataclasses.replace(trained, engines=engines))
    assert (choice.engine.target, choice.engine.precision) == ("openvino", "fp16")  # -0.01, 1.5 ms


def test_a_selection_record_wins(trained):
    object.__setattr__(trained, "selection", {"target": "onnxruntime", "precision": "fp32",
                                              "reason": "named by deploy.select"})
    choice = choose_engine(trained)
    assert (choice.engine.target, choice.engine.precision, choice.reason) == ("onnxruntime", "fp32",
                                                                             "named by deploy.select")


def test_pareto_front_and_ticks():
    points = [(1.0, 0.5), (2.0, 0.9), (1.5, 0.4), (3.0, 0.9), (0.5, 0.1)]
    assert pareto_front(points) == [0, 1, 4]
    assert nice_ticks(0.0, 1.0) == [0.0, 0.5, 1.0]
    assert nice_ticks(13.0, 87.0) == [20.0, 40.0, 60.0, 80.0]


def test_engines_name_their_quantizer_and_task_metrics_are_not_engine_precisions(trained):
    text = render_markdown(trained)
    assert "| student | onnxruntime | int8 (qdq) |" in text and "| student | openvino | int8 (nncf) |" in text
    models = tuple(dataclasses.replace(m, metric={"auc": 0.5, "precision": 0.7}) for m in trained.models)
    tracking = render_markdown(dataclasses.replace(trained, models=models))
    assert "| role | params | MACs | auc | precision (task metric) | metric via | origin |" in tracking


def test_markdown_tables_become_html_tables():
    html = markdown_to_html("## Part\n\n| a | b |\n|---|---:|\n| x\\|y | 1.5 |\n\n- one `two`\n| not a table")
    assert "<h3>Part</h3>" in html
    assert "<th>a</th><th class=num>b</th>" in html and "<td>x|y</td><td class=num>1.5</td>" in html
    assert "<li>one <code>two</code></li>" in html and "<p>| not a table</p>" in html
    section = markdown_section("Slowest modules", ["## Slowest modules", "", "| m | ms |", "|---|---:|",
                                                   "| blocks.0.conv <b> | 2.0 |"])
    assert "<h2>Slowest modules</h2>" in section.html() and "blocks.0.conv &lt;b&gt;" in section.body


def test_extra_sections_come_before_the_protocol(trained):
    extra = markdown_section("Slowest modules", "| m | ms |\n|---|---:|\n| blocks.0 | 2 |", "layers")
    html = render_html(trained, extra=[extra])
    assert html.index('id="engines"') < html.index('id="layers"') < html.index('id="protocol"')


def test_write_report_writes_the_html_beside_the_markdown(trained, tmp_path):
    write_report(trained, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "report.json", "report.md"]
    assert (tmp_path / "report.html").read_text() == render_html(trained)


def test_processor_name_comes_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R)  Xeon(R) Platinum\n")
    assert processor_name(str(cpuinfo)) == "Intel(R) Xeon(R) Platinum"
    assert processor_name(str(tmp_path / "absent"))  # falls back to platform, never empty


def test_compress_report_rerenders_and_compares_two_runs(trained, tmp_path, cli):
    run, other = tmp_path / "run", tmp_path / "other"
    run.mkdir()
    other.mkdir()
    write_report(trained, run)
    slower = tuple(dataclasses.replace(e, latency=dataclasses.replace(e.latency, median=e.latency.median * 2))
                   for e in trained.engines)
    write_report(dataclasses.replace(trained, engines=slower[:-1]), other)
    (run / "report.html").unlink()
    assert cli("report", run).code == 0 and (run / "report.html").is_file()
    before = tree_state(other)
    shown = cli("report", run, "--compare", other)
    assert shown.code == 0, shown.err
    assert "| student: openvino int8 (nncf) | 0.8 | 1.6 | 2x |" in shown.out
    assert "| baseline: onnxruntime fp32 | 2.1 | - | - | 24.5 | - | - |" in shown.out
    assert (run / "compare.html").is_file() and tree_state(other) == before
    assert external_references((run / "compare.html").read_text()) == []
    data = json.loads(cli("report", run, "--compare", other, "--json").out)
    assert data["engines"][0]["latency_ratio"] == pytest.approx(2.0)
    assert data["verdicts"] == ["onnxruntime int8 (qdq)", "onnxruntime int8 (qdq)"]
    assert read_report(run) == json.loads(json.dumps(trained.to_dict()))


@pytest.mark.skipif(chromium() is None, reason="chromium is not installed (Debian: apt-get install chromium)")
def test_chromium_draws_every_chart_without_the_network(trained, tmp_path):
    pytest.importorskip("PIL")
    from compressor.distill.report.screenshot import check_report_draws

    write_report(trained, tmp_path)
    drawn = check_report_draws(tmp_path / "report.html", tmp_path / "shots")
    assert set(drawn) == {"page", "latency", "pareto", "training-teacher", "training-student", "training-baseline"}
    assert drawn["page"] > 0.01 and all(v >= 30 for k, v in drawn.items() if k != "page")
