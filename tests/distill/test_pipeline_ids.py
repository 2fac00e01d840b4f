"""`compress run` of a tiny intrusion-detection recipe on Car-Hacking-format files the test writes, and the
bundle's streaming detector run where only numpy and onnxruntime can be imported."""
from __future__ import annotations

import json
import os
import subprocess
import textwrap

import numpy as np
import pytest

from compressor.distill.data.can_generator import GeneratorConfig, generate, write_log
from tests.distill.gate_checks import assert_int8_gate_measured
from tests.support import assert_one_line_error

TINY = """
name: tiny-ids
task: can-intrusion
seed: 2
data:
  max_train_windows: 6000
  max_val_windows: 2000
  max_test_windows: 2000
  gap: 16
teacher: {model: can_bert_tiny, train: {iterations: 20, batch: 64}}
student: {model: lsfidm_bilstm, train: {iterations: 160, batch: 128, lr: 0.004, select_every: 80}}
distill: {label: 1.0, soft: 0.2, feature: 0.1, temperature: 2.0}  # a 20-step teacher knows little: lean on labels
deploy:
  targets: [{target: onnxruntime}, {target: onnxruntime, precision: int8}]
  int8_budget: 0.05         # below the FP32 metric: a broken INT8 engine would exceed it
  calibration_samples: 3
  compare_count: 1
  profile_seconds: 0.05
  profile_iterations: 3
"""


@pytest.fixture(scope="module")
def car_hacking_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("car-hacking")
    write_log(generate(GeneratorConfig(duration_s=32.0, attack="dos", seed=11)), root / "DoS_dataset.csv")
    write_log(generate(GeneratorConfig(duration_s=26.0, attack="fuzzy", seed=12)), root / "Fuzzy_dataset.csv")
    return root


@pytest.fixture(scope="module")
def recipe_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("recipe") / "tiny-ids.yaml"
    path.write_text(textwrap.dedent(TINY))
    return path


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, car_hacking_folder, recipe_file):
    from compressor.cli import main

    out = tmp_path_factory.mktemp("run") / "out"
    assert main(["run", str(recipe_file), "--out", str(out), "--data", str(car_hacking_folder)]) == 0
    return out


def test_report_has_detection_metrics_for_every_role(tiny_run):
    report = json.loads((tiny_run / "report.json").read_text())
    assert report["task"] == "can-intrusion" and report["headline_metric"] == "fuzzy_f1"
    for role in ("teacher", "student", "baseline"):
        metric = report["models"][role]["metric"]
        assert 0.0 <= metric["fuzzy_f1"] <= 1.0 and 0.0 <= metric["attack_fpr"] <= 1.0
        assert np.isnan(metric["gear_f1"])  # no gear capture in this data
    assert report["models"]["student"]["params"] == report["models"]["baseline"]["params"]
    assert report["models"]["teacher"]["macs"] > report["models"]["student"]["macs"] > 10_000
    assert all(a["parity"]["passed"] for a in report["artifacts"])
    details = report["details"]
    assert [c["name"] for c in details["data"]["captures"]] == ["DoS_dataset.csv", "Fuzzy_dataset.csv"]
    engine = next(iter(details["engines"].values()))
    assert np.array(engine["confusion"]).sum() == details["data"]["splits"]["test"]["normal"] + \
        details["data"]["splits"]["test"]["dos"] + details["data"]["splits"]["test"]["fuzzy"]
    assert engine["classes"]["dos"]["recall"] > 0.8  # DoS is easy even for a briefly trained model
    student = report["models"]["student"]["training"]
    assert student["selected"]["iteration"] in (80, 160)
    markdown = (tiny_run / "report.md").read_text()
    assert "## Detection by class" in markdown and "## Confusion matrices" in markdown


def test_int8_student_is_calibrated_on_training_windows_and_gated(tiny_run):
    import onnx

    report = json.loads((tiny_run / "report.json").read_text())
    (int8,) = [a for a in report["artifacts"] if a["precision"] == "int8"]
    assert int8["role"] == "student" and int8["parity"]["passed"]
    gate = assert_int8_gate_measured(report, budget=0.05)
    assert gate["calibration_samples"] == 3
    ops = {node.op_type for node in onnx.load(int8["path"]).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    rows = {(r["target"], r["precision"]) for r in report["precision_matrix"]}
    assert rows == {("onnxruntime", "fp32"), ("onnxruntime", "int8")}


def test_bundle_holds_the_detector_and_verifies(tiny_run):
    from compressor.targets.bundle import verify_bundle

    folder = tiny_run / "bundle" / "tiny-ids-student"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert {"detect.py", "ids_config.json", "run.py"} <= set(manifest["files"])
    assert json.loads((folder / "ids_config.json").read_text())["tokens_per_window"] == 13
    assert verify_bundle(tiny_run / "bundle" / "tiny-ids-student.tar.gz")["selftest"]["selftest"] is True


def _detect(python, folder, *args, stdin=None):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([str(python), "detect.py", *map(str, args)], cwd=folder, capture_output=True, text=True,
                          env=env, stdin=stdin)
    assert done.returncode == 0, done.stderr
    return done


def test_streaming_detector_flags_injected_frames(tiny_run, runtime_only_python, tmp_path):
    folder = tiny_run / "bundle" / "tiny-ids-student"
    frames = generate(GeneratorConfig(duration_s=8.0, attack="dos", seed=99))
    log = write_log(frames, tmp_path / "dos.csv")
    done = _detect(runtime_only_python, folder, log, "--json", "--quiet")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["frames"] == len(frames) and result["malformed_skipped"] == 0
    assert result["frames_per_s"] > 0 and result["real_time_factor"] > 0
    assert result["bus_rate_frames_per_s"] == pytest.approx((len(frames) - 1) / (frames.ts[-1] - frames.ts[0]))
    lat = result["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    flags = result["against_log_flags"]
    assert flags["tp"] + flags["fn"] == int(frames.flag.sum())
    assert flags["recall"] > 0.9 and flags["precision"] > 0.8
    # alerts: one line per flagged frame, from stdin this time, in candump format (no flags in the log)
    dump = write_log(frames, tmp_path / "dos.log", "candump")
    with open(dump) as handle:
        alerts = _detect(runtime_only_python, folder, "-", stdin=handle).stdout.splitlines()
    dos_alerts = [line for line in alerts if line.split(",")[1:3] == ["000", "dos"]]
    assert len(dos_alerts) > 0.9 * frames.flag.sum() and len(alerts) < 1.2 * frames.flag.sum()


def test_replay_paces_arrivals_by_the_log_timestamps(tiny_run, runtime_only_python, tmp_path):
    folder = tiny_run / "bundle" / "tiny-ids-student"
    frames = generate(GeneratorConfig(duration_s=2.0, seed=5))
    log = write_log(frames, tmp_path / "normal.csv")
    result = json.loads(_detect(runtime_only_python, folder, log, "--replay", "4", "--json", "--quiet").stdout)
    assert result["wall_s"] >= 0.45  # 2 s of traffic at 4x
    assert result["replay_speed"] == 4 and result["frames"] == len(frames)
    assert result["latency_ms"]["p50"] < 100


def test_bad_rows_in_data_fail_with_one_line(cli, tmp_path):
    bad = tmp_path / "Fuzzy_dataset.csv"
    bad.write_text("1478195721.905736,02b0,5,ff,7f,00,05,49,R\n1478195721.906000,0316,8,05,21,R\n")
    result = cli("run", "ids-lsfidm", "--quick", "--out", tmp_path / "out", "--data", bad)
    assert_one_line_error(result, str(bad), "line 2", "DLC 8 needs 12 fields")
    unnamed = tmp_path / "capture.csv"
    unnamed.write_text("1478195721.905736,02b0,5,ff,7f,00,05,49,R\n")
    assert_one_line_error(cli("run", "ids-lsfidm", "--out", tmp_path / "out", "--data", unnamed),
                          "cannot tell the attack kind of capture.csv")


def test_skip_malformed_counts_rows(car_hacking_folder, recipe_file, tmp_path):
    from compressor.distill.recipe import load_recipe
    from compressor.distill.tasks import TASKS
    from compressor.distill.tasks.base import RunContext

    lines = (car_hacking_folder / "Fuzzy_dataset.csv").read_text().splitlines(keepends=True)
    (tmp_path / "Fuzzy_dataset.csv").write_text("".join(lines[:100] + ["oops\n", "1.0,0316,9,R\n"] + lines[100:]))
    text = recipe_file.read_text().replace("  gap: 16", "  gap: 16\n  skip_malformed: true")
    (tmp_path / "skip.yaml").write_text(text)
    recipe = load_recipe(str(tmp_path / "skip.yaml"))
    context = RunContext(out_dir=tmp_path, seed=0, quick=False, data=tmp_path / "Fuzzy_dataset.csv",
                         stage=lambda _: None)
    task = TASKS.get(recipe.task)(recipe.settings, context)
    task.check_inputs()
    capture = task.report_details()["data"]["captures"][0]
    assert capture["malformed_skipped"] == 2 and capture["frames"] == len(lines)


def test_builtin_recipe_and_its_quick_form():
    from compressor.distill.recipe import builtin_recipes, load_recipe

    assert "ids-lsfidm" in builtin_recipes()
    full, quick = load_recipe("ids-lsfidm"), load_recipe("ids-lsfidm", quick=True)
    assert full.task == quick.task == "can-intrusion"
    assert full.settings.teacher.model == "can_bert_base" and quick.settings.teacher.model == "can_bert_mini"
    assert full.settings.student.model == quick.settings.student.model == "lsfidm_bilstm"
    assert quick.settings.data.generate.seconds["fuzzy"] < full.settings.data.generate.seconds["fuzzy"]
    assert quick.settings.data.window == 4 and quick.settings.distill.temperature > 0


def test_bad_ids_settings_name_the_key(tmp_path):
    from compressor.distill.config import ConfigError
    from compressor.distill.recipe import load_recipe

    text = textwrap.dedent(TINY).replace("  gap: 16", "  gap: 16\n  context: bytes")
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(ConfigError, match="data.context: 'bytes' is not one of ids, full"):
        load_recipe(str(tmp_path / "bad.yaml"))
