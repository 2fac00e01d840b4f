"""Best engine selection (``deploy.select``): the fastest engine within the accuracy budget, a named one, the FP32
reference when none qualifies; BF16 entries built exactly where the CPU reports bf16; and once end to end on the
digits example: the bundle holds the selected engine and says which and why."""
from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from compressor.distill.config import ConfigError
from compressor.distill.recipe import load_recipe, parse_recipe
from compressor.distill.select import (
    Candidate,
    SelectionError,
    SelectionRecord,
    SelectRule,
    machine_capabilities,
    plan_targets,
    render_selection,
    select_engine,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "digits"


def candidate(target, precision, quantizer=None, *, drop, ms, parity=True, reference=False, size=1000):
    return Candidate(target=target, precision=precision, quantizer=quantizer,
                     engine=f"student_{target}_{precision}{'_' + quantizer if quantizer else ''}.x",
                     metric_value=30.0 - drop, metric_drop=drop, latency_median_ms=ms, latency_p99_ms=ms * 1.2,
                     size_bytes=size, parity_passed=parity, reference=reference)


REFERENCE = candidate("onnxruntime", "fp32", drop=0.0, ms=132.0, reference=True)
OV_FP32 = candidate("openvino", "fp32", drop=0.001, ms=40.0)
QDQ = candidate("openvino", "int8", "qdq", drop=0.4, ms=18.0)           # fastest, but outside the budget
NNCF = candidate("openvino", "int8", "nncf", drop=-0.006, ms=22.9)      # fastest within the budget
BROKEN = candidate("openvino", "fp16", drop=0.0, ms=10.0, parity=False)  # faster still, but does not match PyTorch
ENGINES = [REFERENCE, OV_FP32, QDQ, NNCF, BROKEN]


def test_fastest_within_the_budget_is_chosen_and_faster_ones_outside_are_named():
    record = select_engine(ENGINES, SelectRule(), budget=0.1, metric="psnr_y")
    assert record.chosen is NNCF and (record.target, record.precision, record.quantizer) == ("openvino", "int8", "nncf")
    assert not record.fallback
    assert "fastest" in record.reason and "22.9 ms" in record.reason
    assert "openvino int8 (qdq) 18 ms (drop 0.4 > budget 0.1)" in record.reason
    assert "openvino fp16 10 ms (it does not match PyTorch" in record.reason
    notes = {w.candidate.label: (w.eligible, w.note) for w in record.candidates}
    assert notes["openvino int8 (qdq)"] == (False, "drop 0.4 > budget 0.1")
    assert notes["openvino int8 (nncf)"] == (True, "chosen")
    assert notes["openvino fp32"][0] is True and "slower" in notes["openvino fp32"][1]
    # a looser budget lets the faster Q/DQ engine in
    assert select_engine(ENGINES, SelectRule(), budget=0.5, metric="psnr_y").chosen is QDQ


def test_a_named_engine_is_bundled_even_when_slower_or_outside_the_budget():
    rule = SelectRule.parse({"target": "openvino", "precision": "fp32"})
    record = select_engine(ENGINES, rule, budget=0.1, metric="psnr_y")
    assert record.chosen is OV_FP32
    assert "named in deploy.select" in record.reason and "within the budget" in record.reason
    outside = select_engine(ENGINES, SelectRule.parse({"target": "openvino", "precision": "int8", "quantizer": "qdq"}),
                            budget=0.1, metric="psnr_y")
    assert outside.chosen is QDQ and "selected although drop 0.4 > budget 0.1" in outside.reason
    with pytest.raises(SelectionError, match="names tensorrt fp16, which this run did not build"):
        select_engine(ENGINES, SelectRule.parse({"target": "tensorrt", "precision": "fp16"}), 0.1, "psnr_y")


def test_when_no_engine_is_within_the_budget_the_fp32_reference_is_bundled_with_the_reason():
    record = select_engine([REFERENCE, QDQ, BROKEN], SelectRule(), budget=0.1, metric="psnr_y",
                           skipped=("openvino bf16 (when: bf16): the CPU reports no bf16",))
    assert record.chosen is REFERENCE and record.fallback
    assert "no student engine but the FP32 reference" in record.reason
    assert "openvino int8 (qdq): drop 0.4 > budget 0.1" in record.reason
    assert "the FP32 reference onnxruntime fp32 is selected" in record.reason
    # the record survives report.json and the bundle's selection.json, and renders as Markdown
    again = SelectionRecord.from_dict(json.loads(json.dumps(record.to_dict())))
    assert again == record
    lines = render_selection(record)
    assert lines[0] == "## Selected engine" and any("**onnxruntime fp32**" in line for line in lines)
    assert any(line.startswith("| openvino int8 (qdq) | 29.6 | +0.4 |") for line in lines)
    assert "Not built on this machine: openvino bf16 (when: bf16): the CPU reports no bf16." in lines
    with pytest.raises(SelectionError, match="not a selection record"):
        SelectionRecord.from_dict({"rule": "fastest"}, "report.json selection")


def test_select_and_when_are_checked_when_the_recipe_loads():
    base = textwrap.dedent("""
        name: mine
        task: super-resolution
        teacher: {model: span_28}
        student: {model: span_tiny}
        deploy:
          targets: [{target: onnxruntime}, {target: openvino, precision: int8, quantizer: nncf}]
        """)

    def load(extra: str):
        import yaml

        data = yaml.safe_load(base)
        data["deploy"].update(yaml.safe_load(extra))
        return parse_recipe(data, "test")

    named = load("{select: {target: openvino, precision: int8, quantizer: nncf}}").deploy.select.named
    assert (named.target, named.precision, named.quantizer) == ("openvino", "int8", "nncf")
    assert load("{select_budget: 0.5}").deploy.select == SelectRule("fastest")
    for extra, problem in [
        ("{select: fastes}", "deploy.select: 'fastes' is not a rule (did you mean 'fastest'?)"),
        ("{select: {target: openvino, precison: int8}}",
         "deploy.select.precison: unknown key (did you mean 'precision'?)"),
        ("{select: {precision: int8}}", "deploy.select.target: missing required key"),
        ("{select: {target: openvino, precision: int8, quantizer: qdq}}",
         "deploy.select: names openvino int8 (qdq), which deploy.targets does not list (listed: onnxruntime fp32, "
         "openvino int8 (nncf))"),
        ("{select: [1]}", "deploy.select: expected fastest or a mapping"),
        ("{select_budget: -1}", "deploy.select_budget: must be at least 0"),
        ("{targets: [{target: onnxruntime}, {target: openvino, precision: bf16, when: bf61}]}",
         "deploy.targets[1].when: 'bf61' is not a condition this toolchain knows (did you mean 'bf16'?)"),
        ("{reference_target: {target: onnxruntime, when: bf16}}", "deploy.reference_target.when"),
    ]:
        with pytest.raises(ConfigError) as caught:
            load(extra)
        assert problem in str(caught.value) and "\n" not in str(caught.value), (extra, str(caught.value))


def test_machine_capabilities_follow_what_the_cpu_reports():
    import openvino as ov

    reported = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    assert ("bf16" in machine_capabilities()) is reported
    flags = set(Path("/proc/cpuinfo").read_text().split()) if Path("/proc/cpuinfo").exists() else set()
    # on x86 OpenVINO's BF16 capability is the CPU's avx512_bf16 / AMX flags
    if {"avx512_bf16", "amx_bf16"} & flags:
        assert reported


def test_without_openvino_the_cpu_flags_decide(monkeypatch):
    """Where OpenVINO cannot be imported, /proc/cpuinfo's flags answer (never a CPU's name)."""
    monkeypatch.setitem(sys.modules, "compressor.targets.openvino.cpu", None)  # import fails
    flags = set(Path("/proc/cpuinfo").read_text().split()) if Path("/proc/cpuinfo").exists() else set()
    assert ("bf16" in machine_capabilities()) is bool({"avx512_bf16", "amx_bf16"} & flags)


@pytest.mark.parametrize("has_bf16", [True, False])
def test_the_search_holds_openvino_bf16_exactly_where_the_cpu_reports_it(monkeypatch, has_bf16):
    from compressor.distill import select
    from compressor.distill.pipeline import check_targets

    monkeypatch.setattr(select, "cpu_reports_bf16", lambda: has_bf16)
    for name in ("sr-dsclora", "ids-lsfidm", "text-minilm", "track-ortrack"):
        recipe = load_recipe(name, quick=True)
        plan = plan_targets(recipe.deploy)
        built = {(c.target, c.precision) for c in plan.built}
        assert (("openvino", "bf16") in built) is has_bf16, name
        assert len(plan.built) + len(plan.skipped) == len(recipe.deploy.targets)
        if not has_bf16:
            assert plan.skipped == ("openvino bf16 (when: bf16): the CPU reports no bf16 (neither avx512_bf16 nor "
                                    "AMX)",)
    recipe = load_recipe("sr-dsclora", quick=True)
    if has_bf16 and not _openvino_bf16():
        pytest.skip("OpenVINO on this CPU builds no bf16")
    check_targets(recipe)  # before training: every entry built here is buildable; a skipped one asks nothing
    named = dataclasses.replace(recipe, deploy=dataclasses.replace(
        recipe.deploy, select={"target": "openvino", "precision": "bf16"}))
    if has_bf16:
        check_targets(named)
    else:
        with pytest.raises(SelectionError, match="names openvino bf16, which is not built on this machine"):
            check_targets(named)


def _openvino_bf16() -> bool:
    from compressor.targets.openvino.cpu import cpu_supports_bf16

    return cpu_supports_bf16()


RECIPE = """name: digits
task: classification
seed: 0
teacher: {model: teacher.py:build, train: {iterations: 60, lr: 0.01, batch: 32}}
student: {model: student.py:build, args: {width: 8}}
data: {source: data}
distill:
  losses: [{name: hinton, weight: 0.5, temperature: 4}, {name: ce, weight: 0.5}]
  train: {iterations: 60, lr: 0.01, batch: 32}
deploy:
  targets:
    - {target: onnxruntime, precision: fp32}
    - {target: openvino, precision: fp32}
    - {target: onnxruntime, precision: int8}
    - {target: openvino, precision: bf16, when: bf16}
  int8_budget: 1.0
  select_budget: 1.0
  calibration_samples: 8
  compare_count: 1
  profile_seconds: 0.2
  profile_iterations: 10
"""


@pytest.mark.slow
def test_digits_run_bundles_the_selected_engine_and_says_which_and_why(tmp_path, cli):
    project = tmp_path / "digits"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("data", "runs", "__pycache__"))
    subprocess.run([sys.executable, "make_data.py", "--out", "data", "--train-per-class", "8", "--val-per-class", "3"],
                   cwd=project, check=True, timeout=120)
    (project / "r.yaml").write_text(RECIPE)
    run = tmp_path / "run"
    # a size budget no engine meets: the run completes and is published, then the broken budget exits 1
    ran = cli("run", project / "r.yaml", "--out", run, "--budget", "p99_ms=100000,size_mb=0.000001")
    assert ran.code == 1, ran.err
    broken = [line for line in ran.err.splitlines() if line.startswith("budget broken")]
    assert len(broken) == 1 and "size_mb" in broken[0] and "> 1e-06" in broken[0] and "p99_ms" not in broken[0]
    report = json.loads((run / "report.json").read_text())
    students = [e for e in report["artifacts"] if e["role"] == "student"]
    assert ("openvino", "bf16") in {(e["target"], e["precision"]) for e in students} or "bf16" not in \
        machine_capabilities()
    bundle = run / "bundle" / "digits-student"
    selection = json.loads((bundle / "selection.json").read_text())
    manifest = json.loads((bundle / "manifest.json").read_text())
    # the bundle holds the engine the selection chose, and that engine is the fastest within the budget
    assert (manifest["target"], manifest["precision"]) == (selection["target"], selection["precision"])
    assert Path(manifest["model"]["path"]).name == selection["engine"]
    eligible = [c for c in selection["candidates"] if c["eligible"]]
    assert selection["engine"] == min(eligible, key=lambda c: c["latency_median_ms"])["engine"]
    assert {c["engine"] for c in selection["candidates"]} == {Path(e["path"]).name for e in students}
    assert selection["rule"] == "fastest" and selection["reason"] and selection["budget"] == 1.0
    label = f"{selection['target']} {selection['precision']}"
    assert f"selected: {label}" in ran.out and selection["reason"] in ran.out
    # bundle verify checks the same budgets on the bundle (profile, model files, selection.json)
    archive = run / "bundle" / "digits-student.tar.gz"
    held = cli("bundle", "verify", archive, "--budget", "p99_ms=100000,metric_drop=1,size_mb=1000")
    assert held.code == 0 and "budget held on bundle digits-student" in held.out, held.err
    slow = cli("bundle", "verify", bundle, "--budget", "p99_ms=0,metric_drop=1")
    assert slow.code == 1 and slow.err.strip().startswith("budget broken on bundle digits-student") and \
        "p99_ms" in slow.err and "metric_drop" not in slow.err
    # the bundle's own profile names its engine, and merges into the run's report under it
    done = subprocess.run([sys.executable, "-I", "run.py", "--profile", "--json", "--seconds", "0.1",
                           "--iterations", "5"], cwd=bundle, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    profile = json.loads(done.stdout)
    assert (profile["target"], profile["precision"]) == (selection["target"], selection["precision"])
    (tmp_path / "device.json").write_text(done.stdout)
    merged = cli("report", run, "--device-profile", tmp_path / "device.json", "--device", "pi5")
    assert merged.code == 0 and f"pi5: {label} median" in merged.out, merged.err
