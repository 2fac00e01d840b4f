"""The run report from fixed numbers (no training): report.json keys and values, report.md text, device
profiles merged through ``compress report``."""
from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import pytest
import torch

from compressor.distill.int8.record import Int8Record, QatRecord
from compressor.distill.recipe import TargetChoice
from compressor.distill.report.build import build_run_report
from compressor.distill.report.model import EngineReport, Latency, Parity
from compressor.distill.report.read import (
    merge_device_profile,
    read_report,
    report_from_dict,
)
from compressor.distill.report.render import render_markdown, write_report
from compressor.distill.tasks import RoleModel
from tests.support import assert_one_line_error, assert_untouched_outside, tree_state

PROTOCOL = {"warmup_s": 0.5, "min_iterations": 3, "min_duration_s": 0.05, "timer": "perf_counter_ns", "batch": 1}


def _engine(role: str, target: str, precision: str, psnr: float, median: float, *, passed: bool = True,
            inputs: str = "random", int8: Int8Record | None = None) -> EngineReport:
    latency = {"min": median * 0.9, "median": median, "mean": median * 1.01, "p90": median * 1.1, "p95": median * 1.2,
               "p99": median * 1.5, "max": median * 2, "std": 0.01}
    profile = {"latency_ms": latency, "throughput_fps": 1000.0 / median, "cov": 0.02, "iterations": 3,
               "protocol": PROTOCOL, "warnings": []}
    return EngineReport(
        role=role, target=target, precision=precision, path=f"/runs/x/engines/{role}_{target}_{precision}.onnx",
        size_bytes=524288 if role == "student" else 1048576,
        parity=Parity(passed=passed, max_abs=2.5e-6, inputs=inputs,
                      details={"feeds": 4, "tolerance": {"atol": 1e-4, "rtol": 1e-3}, "outputs": []}),
        metric={"psnr_y": psnr, "ssim_y": 0.75, "images": [{"name": "0001", "psnr_y": psnr}]},
        latency=Latency.from_dict(latency), throughput_fps=1000.0 / median, cov=0.02, profile=profile,
        profile_input=("image:1x3x16x16:float32:0..1",), int8=int8)


QAT = QatRecord(iterations=3, scheme="openvino", seconds=1.25, relative_l1_before=0.2, relative_l1_after=0.1,
                used=True, trained_ranges=True, details={"lr": 1e-5, "samples": 4, "layers": 7, "final_loss": 0.3})
GATE_PASSED = Int8Record(reference_metric=25.0, budget=0.5, passed=True, kept_in_float=("conv_1", "conv_2"),
                         tries=({"kept_in_float": [], "metric": 24.2}, {"kept_in_float": ["conv_1", "conv_2"],
                                                                         "metric": 24.8}),
                         calibration_samples=4, method="minmax", quantizer="qdq", float_layers="fp32", qat=QAT)
GATE_FAILED = Int8Record(reference_metric=25.0, budget=0.5, passed=False, kept_in_float=("conv_1",),
                         tries=({"kept_in_float": ["conv_1"], "metric": 23.0},), calibration_samples=4,
                         method="minmax", quantizer="nncf", float_layers="fp16")
ENGINES = (
    _engine("student", "onnxruntime", "fp32", 25.0, 2.0),
    _engine("student", "openvino", "fp16", 24.99, 1.5),
    _engine("student", "onnxruntime", "int8", 24.8, 1.0, inputs="task data", int8=GATE_PASSED),
    _engine("student", "openvino", "int8", 23.0, 0.8, passed=False, inputs="task data", int8=GATE_FAILED),
    _engine("teacher", "onnxruntime", "fp32", 26.0, 8.0),
    _engine("baseline", "onnxruntime", "fp32", 24.5, 2.1),
)


@pytest.fixture
def report():
    roles = {role: RoleModel(torch.nn.Identity(), ["y"], f"{role} origin", {"iterations": 4})
             for role in ("teacher", "student", "baseline")}
    complexity = {"teacher": {"params": 150_688, "macs": 2_000_000_000}, "student": {"params": 130_828, "macs": 1e9},
                  "baseline": {"params": 130_828, "macs": 1e9}}
    recipe = SimpleNamespace(name="tiny-sr", source="tiny.yaml", task="super-resolution",
                             deploy=SimpleNamespace(reference_target=TargetChoice("onnxruntime"),
                                                    layer_profile_runs=0))
    context = SimpleNamespace(seed=3, quick=False)
    task = SimpleNamespace(metric="psnr_y", report_details=lambda evaluations: {"per_class": {"a": 1}},
                           report_markdown=lambda evaluations: "## Task details\n\nsomething\n")
    built = build_run_report(recipe, context, task, roles, complexity, ENGINES, seconds=41.6)
    return dataclasses.replace(built, created="2024-05-01T10:00:00+0000", host={"machine": "x86_64"},
                               versions={"edge_compress": "0.1.0", "torch": "2.3.0"})


def test_report_json_has_todays_structure(report):
    data = report.to_dict()
    assert list(data) == ["recipe", "recipe_source", "task", "seed", "quick", "created", "versions", "host",
                          "headline_metric", "models", "summary", "artifacts", "precision_matrix", "wall_seconds",
                          "details", "details_markdown"]
    assert list(data["models"]) == ["teacher", "student", "baseline"]
    assert data["models"]["student"] == {"params": 130_828, "macs": 1e9, "origin": "student origin",
                                         "training": {"iterations": 4}, "metric": ENGINES[0].metric,
                                         "metric_engine": "onnxruntime fp32"}
    assert data["summary"] == {"student_psnr_y": 25.0, "baseline_psnr_y": 24.5, "teacher_psnr_y": 26.0,
                               "student_minus_baseline": 0.5, "teacher_to_student_latency_ratio": 4.0,
                               "teacher_to_student_params_ratio": 150_688 / 130_828, "all_parity_passed": False}
    int8 = data["artifacts"][2]
    assert list(int8) == ["role", "target", "precision", "path", "size_bytes", "parity", "metric", "latency_ms",
                          "throughput_fps", "cov", "profile_input", "int8_gate", "protocol"]
    assert int8["parity"] == {"passed": True, "max_abs": 2.5e-6, "feeds": 4, "tolerance": {"atol": 1e-4, "rtol": 1e-3},
                              "outputs": [], "inputs": "task data"}
    assert list(int8["latency_ms"]) == ["median", "mean", "p90", "p99", "min", "max"]
    assert int8["int8_gate"] == GATE_PASSED.to_dict() and int8["protocol"] == PROTOCOL
    assert "int8_gate" not in data["artifacts"][0] and "profile" not in data["artifacts"][0]
    assert [(r["target"], r["precision"]) for r in data["precision_matrix"]] == [
        ("onnxruntime", "fp32"), ("openvino", "fp16"), ("onnxruntime", "int8"), ("openvino", "int8")]
    fp32, _, qdq, nncf = data["precision_matrix"]
    assert fp32 == {"target": "onnxruntime", "precision": "fp32", "psnr_y": 25.0, "delta_vs_fp32": 0.0,
                    "parity_passed": True, "parity_max_abs": 2.5e-6, "latency_median_ms": 2.0, "latency_p99_ms": 3.0,
                    "size_bytes": 524288, "kept_in_float": [], "quantizer": None, "float_layers": None,
                    "gate_passed": None, "qat_iterations": 0}
    assert qdq["kept_in_float"] == ["conv_1", "conv_2"] and qdq["qat_iterations"] == 3 and qdq["gate_passed"]
    assert qdq["delta_vs_fp32"] == pytest.approx(-0.2) and qdq["quantizer"] == "qdq"
    assert nncf["gate_passed"] is False and nncf["qat_iterations"] == 0 and nncf["float_layers"] == "fp16"
    assert data["details"] == {"per_class": {"a": 1}} and json.loads(json.dumps(data)) == data


def test_qat_that_was_not_used_counts_no_iterations(report):
    unused = dataclasses.replace(GATE_PASSED, qat=dataclasses.replace(QAT, used=False))
    engines = (*ENGINES[:2], dataclasses.replace(ENGINES[2], int8=unused), *ENGINES[3:])
    from compressor.distill.report.build import precision_matrix

    assert precision_matrix(engines, 25.0, "psnr_y")[2].qat_iterations == 0


EXPECTED_MARKDOWN = """\
# tiny-sr (full run, seed 3)

Created 2024-05-01T10:00:00+0000 with edge-compress 0.1.0, torch 2.3.0. Every number below was measured in this run.

## Verdict

Deploy the student on onnxruntime int8 (qdq): 1 ms median, 1.5 ms p99 on this host (the fastest student engine whose \
psnr_y is within 0.5 of the FP32 student and that matches PyTorch). That is 8.0x faster than the teacher on \
onnxruntime fp32 (8 ms) and 2.0x faster than the student on onnxruntime fp32 (2 ms). It costs psnr_y 24.8: -0.2 \
against the FP32 student (budget 0.5), -1.2 against the teacher (26); distillation gained +0.5 over the baseline \
trained without the teacher (24.5). Not every engine matches PyTorch: see the engines table.

## Models

| role | params | MACs | psnr_y | ssim_y | metric via | origin |
|---|---:|---:|---:|---:|---|---|
| teacher | 150,688 | 2.000 G | 26.0000 | 0.7500 | onnxruntime fp32 | teacher origin |
| student | 130,828 | 1.000 G | 25.0000 | 0.7500 | onnxruntime fp32 | student origin |
| baseline | 130,828 | 1.000 G | 24.5000 | 0.7500 | onnxruntime fp32 | baseline origin |

## Engines

| role | target | precision | size | parity max abs | parity | psnr_y | median ms | p90 ms | p99 ms | samples/s |
|---|---|---|---:|---:|---|---:|---:|---:|---:|---:|
| student | onnxruntime | fp32 | 512 KiB | 2.50e-06 | pass | 25.0000 | 2.000 | 2.200 | 3.000 | 500.0 |
| student | openvino | fp16 | 512 KiB | 2.50e-06 | pass | 24.9900 | 1.500 | 1.650 | 2.250 | 666.7 |
| student | onnxruntime | int8 (qdq) | 512 KiB | 2.50e-06 | pass (task data) | 24.8000 | 1.000 | 1.100 | 1.500 | \
1000.0 |
| student | openvino | int8 (nncf) | 512 KiB | 2.50e-06 | FAIL (task data) | 23.0000 | 0.800 | 0.880 | 1.200 | \
1250.0 |
| teacher | onnxruntime | fp32 | 1024 KiB | 2.50e-06 | pass | 26.0000 | 8.000 | 8.800 | 12.000 | 125.0 |
| baseline | onnxruntime | fp32 | 1024 KiB | 2.50e-06 | pass | 24.5000 | 2.100 | 2.310 | 3.150 | 476.2 |

## Precision matrix (student)

| target | precision | psnr_y | change vs FP32 | parity | median ms | p99 ms | size | kept in float |
|---|---|---:|---:|---|---:|---:|---:|---|
| onnxruntime | fp32 | 25.0000 | +0.0000 | pass | 2.000 | 3.000 | 512 KiB | - |
| openvino | fp16 | 24.9900 | -0.0100 | pass | 1.500 | 2.250 | 512 KiB | - |
| onnxruntime | int8 (qdq) | 24.8000 | -0.2000 | pass | 1.000 | 1.500 | 512 KiB | conv_1, conv_2 (gate passed); \
after 3 QAT iterations |
| openvino | int8 (nncf) | 23.0000 | -2.0000 | FAIL | 0.800 | 1.200 | 512 KiB | conv_1 (in fp16) (gate FAILED) |

## Summary

- student psnr_y 25.0000 vs baseline (same steps, no KD) 24.5000: +0.5000
- teacher psnr_y 26.0000
- teacher-to-student latency ratio 4.00x, parameter ratio 1.15x
- every engine matches PyTorch: NO (on random inputs over each input's range; INT8 engines, whose ranges are \
calibrated on the task's data, on samples of it)
- profile input ['image:1x3x16x16:float32:0..1'], 0.05 s minimum per engine
- host x86_64
- wall time 42 s

## Task details

something
"""


def test_markdown_is_todays_text(report):
    assert render_markdown(report) == EXPECTED_MARKDOWN


def test_markdown_names_the_bundle_and_device_profiles(report, tmp_path):
    profile = tmp_path / "device.json"
    profile.write_text(json.dumps({"latency_ms": {"median": 5.0, "mean": 5.1, "p90": 5.5, "p99": 6.0, "min": 4.9,
                                                  "max": 7.0, "std": 0.1}, "throughput_fps": 200.0, "cov": 0.03,
                                   "target": "onnxruntime", "precision": "fp32",
                                   "protocol": {"timer": "perf_counter_ns", "host": {"device": "jetson"}}}))
    merged = merge_device_profile(dataclasses.replace(report, bundle="/runs/x/bundle/tiny-sr-student.tar.gz"),
                                  profile)
    text = render_markdown(merged)
    assert "- bundle: /runs/x/bundle/tiny-sr-student.tar.gz\n" in text
    assert ("## Measured on devices\n\n"
            "| device | target | precision | median ms | p90 ms | p99 ms | samples/s | timer |\n"
            "|---|---|---|---:|---:|---:|---:|---|\n"
            "| jetson | onnxruntime | fp32 | 5.000 | 5.500 | 6.000 | 200.0 | perf_counter_ns |\n") in text
    again = merge_device_profile(merged, profile, "orin-nano")
    assert [d.device for d in again.device_profiles] == ["jetson", "orin-nano"]
    assert [d.device for d in merge_device_profile(again, profile).device_profiles] == ["orin-nano", "jetson"]
    data = again.to_dict()
    assert list(data)[-2:] == ["bundle", "device_profiles"]
    assert data["device_profiles"][1] == {
        "device": "orin-nano", "target": "onnxruntime", "precision": "fp32",
        "latency_ms": {"median": 5.0, "mean": 5.1, "p90": 5.5, "p99": 6.0, "min": 4.9, "max": 7.0},
        "throughput_fps": 200.0, "cov": 0.03, "protocol": {"timer": "perf_counter_ns", "host": {"device": "jetson"}},
        "source": str(profile)}


def test_json_round_trip_is_exact(report, tmp_path):
    write_report(report, tmp_path)
    data = read_report(tmp_path)
    assert data == json.loads(json.dumps(report.to_dict()))
    assert report_from_dict(data).to_dict() == data
    assert (tmp_path / "report.md").read_text() == EXPECTED_MARKDOWN


def test_compress_report_merges_a_device_profile(report, tmp_path, cli):
    write_report(report, tmp_path)
    before = read_report(tmp_path)
    listed = cli("report", tmp_path)
    assert listed.code == 0 and "6 engine(s) measured here, 0 device profile(s)" in listed.out
    profile = tmp_path / "device.json"
    profile.write_text(json.dumps({"latency_ms": {"median": 5.0, "mean": 5.1, "p90": 5.5, "p99": 6.0, "min": 4.9,
                                                  "max": 7.0}, "throughput_fps": 200.0, "cov": 0.03,
                                   "target": "onnxruntime", "precision": "fp32", "protocol": {"timer": "t"}}))
    merged = cli("report", tmp_path, "--device-profile", profile, "--device", "orin-nano", "--json")
    assert merged.code == 0, merged.err
    after = read_report(tmp_path)
    assert json.loads(merged.out) == after
    assert {k: v for k, v in after.items() if k != "device_profiles"} == before
    (row,) = after["device_profiles"]
    assert row["device"] == "orin-nano" and row["latency_ms"]["median"] == 5.0
    text = (tmp_path / "report.md").read_text()
    assert text.startswith(EXPECTED_MARKDOWN.split("\n## Summary")[0])
    assert "| orin-nano | onnxruntime | fp32 | 5.000 | 5.500 | 6.000 | 200.0 | t |" in text


def test_compress_report_errors_are_one_line(tmp_path, cli):
    missing = cli("report", tmp_path)
    assert missing.code == 2 and "no report.json in" in missing.err
    (tmp_path / "report.json").write_text("{not json")
    assert "is not valid JSON" in cli("report", tmp_path).err
    (tmp_path / "report.json").write_text("{}")
    assert_one_line_error(cli("report", tmp_path), "report.json is not a report written by 'compress run'")
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    result = cli("report", tmp_path, "--device-profile", bad)
    assert result.code == 2 and "is not a report written by 'compress run'" in result.err


def test_a_bad_device_profile_is_one_line(report, tmp_path, cli):
    write_report(report, tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    result = cli("report", tmp_path, "--device-profile", bad)
    assert result.code == 2 and "not a profile written by 'compress profile' or a bundle" in result.err
    absent = cli("report", tmp_path, "--device-profile", tmp_path / "absent.json")
    assert absent.code == 2 and "does not exist" in absent.err


def test_an_int8_gate_dict_reads_back_as_the_record():
    from compressor.distill.report.read import int8_record_from_dict

    assert int8_record_from_dict(GATE_PASSED.to_dict()) == GATE_PASSED
    assert int8_record_from_dict(GATE_FAILED.to_dict()) == GATE_FAILED


DEVICE_PROFILE = {"latency_ms": {"median": 5.0, "mean": 5.1, "p90": 5.5, "p99": 6.0, "min": 4.9, "max": 7.0},
                  "throughput_fps": 200.0, "cov": 0.03, "target": "onnxruntime", "precision": "fp32",
                  "protocol": {"timer": "t"}}


def _with(data: dict, path: str, value) -> dict:
    """A deep copy of ``data`` with the value at dotted ``path`` (list indices as numbers) replaced."""
    data = json.loads(json.dumps(data))
    *parents, last = [int(k) if k.isdigit() else k for k in path.split(".")]
    here = data
    for key in parents:
        here = here[key]
    here[last] = value
    return data


@pytest.mark.parametrize("field, value, problem", [
    ("latency_ms.median", "fast", "expected a number"),
    ("latency_ms.median", None, "expected a number"),
    ("latency_ms.p99", -1.5, "expected a number >= 0"),
    ("latency_ms.mean", float("nan"), "expected a finite number"),
    ("latency_ms.max", float("inf"), "expected a finite number"),
    ("latency_ms.min", True, "expected a number"),
    ("throughput_fps", "fast", "expected a number"),
    ("throughput_fps", -3.0, "expected a number >= 0"),
    ("cov", "low", "expected a number"),
    ("target", ["onnxruntime"], "expected text"),
])
def test_a_bad_device_profile_is_refused_before_anything_is_written(report, tmp_path, cli, field, value, problem):
    run = tmp_path / "run"
    run.mkdir()
    write_report(report, run)
    profile = tmp_path / "device.json"
    profile.write_text(json.dumps(_with(DEVICE_PROFILE, field, value)))
    before = tree_state(tmp_path)
    result = cli("report", run, "--device-profile", profile)
    assert_one_line_error(result, str(profile), f"field {field} ", problem)
    assert tree_state(tmp_path) == before
    assert_untouched_outside(tmp_path, before)
    assert "device_profiles" not in read_report(run)


def test_a_profile_missing_a_latency_statistic_names_it(report, tmp_path, cli):
    write_report(report, tmp_path)
    profile = tmp_path / "device.json"
    data = json.loads(json.dumps(DEVICE_PROFILE))
    del data["latency_ms"]["p90"]
    profile.write_text(json.dumps(data))
    assert_one_line_error(cli("report", tmp_path, "--device-profile", profile), "field latency_ms.p90 is missing")


@pytest.mark.parametrize("field, value, problem", [
    ("artifacts.0.latency_ms.median", "fast", "expected a number"),
    ("artifacts.2.throughput_fps", "many", "expected a number"),
    ("artifacts.1.latency_ms.p90", float("nan"), "expected a finite number"),
    ("artifacts.0.protocol", None, "expected an object"),
    ("summary.student_psnr_y", "good", "expected a number"),
    ("precision_matrix.1.latency_median_ms", -2.0, "expected a number >= 0"),
    ("models.student.params", 1.5, "expected a whole number"),
    ("versions", "1.0", "expected an object"),
    ("artifacts", [], "is empty"),
])
def test_a_broken_report_json_is_one_line_naming_the_file_and_field(report, tmp_path, cli, field, value, problem):
    write_report(report, tmp_path)
    broken = _with(read_report(tmp_path), field, value)
    (tmp_path / "report.json").write_text(json.dumps(broken))
    before = tree_state(tmp_path)
    shown = field.replace(".0", "[0]").replace(".1", "[1]").replace(".2", "[2]")
    assert_one_line_error(cli("report", tmp_path), str(tmp_path / "report.json"), f"field {shown} ", problem)
    profile = tmp_path / "device.json"
    profile.write_text(json.dumps(DEVICE_PROFILE))
    before = tree_state(tmp_path)
    assert_one_line_error(cli("report", tmp_path, "--device-profile", profile), f"field {shown} ")
    assert tree_state(tmp_path) == before


def test_a_device_profile_with_bad_numbers_already_in_report_json_is_named(report, tmp_path, cli):
    profile = tmp_path / "device.json"
    profile.write_text(json.dumps(DEVICE_PROFILE))
    write_report(merge_device_profile(report, profile), tmp_path)
    broken = _with(read_report(tmp_path), "device_profiles.0.latency_ms.median", "fast")
    (tmp_path / "report.json").write_text(json.dumps(broken))
    assert_one_line_error(cli("report", tmp_path, "--json"), "report.json: field device_profiles[0].latency_ms.median",
                          "'fast'")


@pytest.mark.parametrize("name", ["orin\nnano | jetpack 6", "orin\r\n| x |\tnano", "a|b|c"])
def test_device_names_with_line_breaks_or_pipes_stay_one_table_cell(report, tmp_path, cli, name):
    write_report(report, tmp_path)
    profile = tmp_path / "device.json"
    profile.write_text(json.dumps(_with(DEVICE_PROFILE, "protocol", {"timer": "t|x", "host": {"device": name}})))
    assert cli("report", tmp_path, "--device-profile", profile).code == 0
    assert cli("report", tmp_path, "--device-profile", profile, "--device", name).code == 0
    (row,) = {d["device"] for d in read_report(tmp_path)["device_profiles"]}
    assert "\n" not in row and "\r" not in row and "\t" not in row and "  " not in row
    table = (tmp_path / "report.md").read_text().split("## Measured on devices")[1].split("\n\n")[1]
    lines = table.splitlines()
    assert len(lines) == 3  # header, rule, one device row
    unescaped = lines[2].replace("\\|", "")
    assert unescaped.count("|") == lines[0].count("|") == 9
    assert lines[2].startswith("| " + row.replace("|", "\\|") + " | onnxruntime | fp32 | 5.000 |")
    assert "t\\|x" in lines[2]
    assert report_from_dict(read_report(tmp_path)).device_profiles[0].device == row


def test_an_empty_device_name_is_refused(report, tmp_path, cli):
    write_report(report, tmp_path)
    profile = tmp_path / "device.json"
    profile.write_text(json.dumps(DEVICE_PROFILE))
    assert_one_line_error(cli("report", tmp_path, "--device-profile", profile, "--device", " \n "),
                          "field device is empty")


def test_latency_warnings_are_kept_shown_and_read_back(report, tmp_path):
    noisy = dataclasses.replace(report.engines[0], profile={
        **report.engines[0].profile, "warnings": ["CoV 131% > 10%: the latencies vary a lot"],
        "windows": {"count": 5, "iterations": [3, 3, 3, 3, 3], "median_ms": [1.0, 1.1, 1.0, 5.0, 1.0],
                    "spread": 4.0}})
    noisy_report = dataclasses.replace(report, engines=(noisy, *report.engines[1:]))
    data = noisy_report.to_dict()
    assert data["artifacts"][0]["warnings"] == ["CoV 131% > 10%: the latencies vary a lot"]
    assert "warnings" not in data["artifacts"][1]  # quiet engines carry none
    markdown = render_markdown(noisy_report)
    assert "**Latency warnings**" in markdown and "CoV 131% > 10%" in markdown
    assert "**Latency warnings**" not in render_markdown(report)
    write_report(noisy_report, tmp_path)
    again = report_from_dict(read_report(tmp_path))
    assert again.engines[0].warnings == noisy.warnings and again.to_dict() == data
    assert 'id="warnings"' in (tmp_path / "report.html").read_text()
