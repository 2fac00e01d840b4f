"""Stage caching in ``compress run``: a rerun into the same folder takes trainings, ONNX exports, engines and INT8
builds whose inputs are unchanged from the folder's ``.cache`` (verifying their digests), redoes the rest, says
and records what it reused, keeps only what it used, and ``--fresh`` reuses nothing."""
from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest

from tests.distill.tiny_project import write_tiny_project

RECIPE = """
name: cached
task: classification
seed: 0
teacher: {{model: nets.py:teacher, train: {{iterations: 30, lr: 0.01, batch: 32}}}}
student: {{model: nets.py:student}}
data: {{source: data.npz}}
distill: {{train: {{iterations: {student_iterations}, lr: 0.01, batch: 32}}}}
deploy:
  targets: [{targets}]
  int8_budget: 1.0
  calibration_samples: 8
  compare_count: 1
  profile_seconds: 0.05
  profile_iterations: 3
  layer_profile_runs: 0
  bundle: false
"""
ORT_FP32 = "{target: onnxruntime, precision: fp32}"
ORT_INT8 = "{target: onnxruntime, precision: int8}"
OV_FP32 = "{target: openvino, precision: fp32}"
ROLES = ("teacher", "student", "baseline")


def write_recipe(project: Path, name: str, targets: str, student_iterations: int = 20) -> Path:
    path = project / name
    path.write_text(textwrap.dedent(RECIPE.format(targets=targets, student_iterations=student_iterations)))
    return path


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> tuple[Path, Path]:
    """A project (an MLP teacher and student on a small classification set) and one finished run of it, with
    ONNX Runtime FP32 and INT8 engines: ``(project, run folder)``. Tests copy the run and rerun into the copy."""
    from compressor.cli import main

    project = tmp_path_factory.mktemp("cached")
    write_tiny_project(project)
    recipe = write_recipe(project, "base.yaml", f"{ORT_FP32}, {ORT_INT8}")
    run = project / "run"
    assert main(["run", str(recipe), "--out", str(run)]) in (0, None)
    return project, run


@pytest.fixture
def run(first_run, tmp_path) -> Path:
    """A copy of the first run's folder (its cache included), to rerun into."""
    copy = tmp_path / "run"
    shutil.copytree(first_run[1], copy, symlinks=True)
    return copy


def report(run: Path) -> dict:
    return json.loads((run / "report.json").read_text())


def engines(run: Path) -> dict[str, dict]:
    """report.json's engines by file name."""
    return {Path(a["path"]).name: a for a in report(run)["artifacts"]}


def train_files(run: Path) -> dict[str, int]:
    """The training checkpoints in the run's cache: name -> modification time."""
    return {p.name: p.stat().st_mtime_ns for p in sorted((run / ".cache" / "train").iterdir())}


def train_contents(run: Path) -> dict[str, str]:
    """The training checkpoints in the run's cache: name -> SHA-256 (a reused one is only touched)."""
    from compressor.core.files import sha256_file

    return {p.name: sha256_file(p) for p in sorted((run / ".cache" / "train").iterdir())}


def entries(run: Path, kind: str) -> list[dict]:
    folder = run / ".cache" / kind
    return [json.loads((e / "entry.json").read_text()) for e in sorted(folder.iterdir())] if folder.is_dir() else []


def entry_file(run: Path, kind: str, primary: str) -> Path:
    """The cached main file of the ``kind`` entry whose artifact is ``primary`` (an ONNX or engine name)."""
    for entry in sorted((run / ".cache" / kind).iterdir()):
        data = json.loads((entry / "entry.json").read_text())
        if data["artifacts"]["main"]["primary"] == primary:
            return entry / "main" / primary
    raise AssertionError(f"no {kind} entry for {primary}")


def test_changing_only_a_deploy_setting_trains_nothing_and_reuses_unchanged_builds(first_run, run, cli):
    project, _ = first_run
    trained = train_contents(run)
    recipe = write_recipe(project, "deploy.yaml", f"{ORT_FP32}, {OV_FP32}")  # INT8 dropped, OpenVINO added
    result = cli("run", recipe, "--out", run)
    assert result.code == 0, result.err
    models = report(run)["models"]
    assert all(models[role]["training"].get("reused") is True for role in ROLES), models
    # no training step ran: a training that ran would have written its checkpoint (data position, timings)
    assert train_contents(run) == trained
    assert "reused finished training of teacher, student, baseline" in result.out
    for role in ROLES:
        assert f"reused export {role}.onnx (same weights and specs)" in result.out
        assert f"reused engine {role}_onnxruntime_fp32 (same ONNX, options and runtime version)" in result.out
    assert set(report(run)["reused_exports"]) == {f"{role}.onnx" for role in ROLES}
    built = engines(run)
    assert {name for name, e in built.items() if e.get("reused")} == {f"{r}_onnxruntime_fp32.onnx" for r in ROLES}
    assert "reused" not in built["student_openvino_fp32.xml"]  # the new target was built
    assert "reused engine student_openvino" not in result.out
    # measured in this run on the reused engine
    assert built["student_onnxruntime_fp32.onnx"]["parity"]["passed"] is True
    markdown = (run / "report.md").read_text()
    assert "**Reused**" in markdown and "- engine student onnxruntime fp32 (built by the run of" in markdown
    page = (run / "report.html").read_text()
    assert 'id="reused"' in page and "engine student onnxruntime fp32 (built by the run of" in page
    # the cache keeps what this run used: the dropped INT8 build is gone, the new OpenVINO engine is kept
    assert entries(run, "int8") == []
    assert sorted(e["artifacts"]["main"]["primary"] for e in entries(run, "engine")) == sorted(
        [f"{r}_onnxruntime_fp32.onnx" for r in ROLES] + ["student_openvino_fp32.xml"])
    assert len(entries(run, "export")) == 3


def test_fresh_reuses_nothing_and_trains_every_role_again(first_run, run, cli):
    project, _ = first_run
    trained = train_files(run)
    result = cli("run", write_recipe(project, "base.yaml", f"{ORT_FP32}, {ORT_INT8}"), "--out", run, "--fresh")
    assert result.code == 0, result.err
    models = report(run)["models"]
    assert not any(models[role]["training"].get("reused") for role in ROLES), models
    assert all(models[role]["training"]["iterations"] > 0 for role in ROLES)
    after = train_files(run)
    assert set(after) == set(trained) and all(after[name] > trained[name] for name in trained)  # rewritten
    assert "reused" not in result.out
    assert "reused_exports" not in report(run)
    assert not any(e.get("reused") for e in engines(run).values())
    assert "**Reused**" not in (run / "report.md").read_text()
    assert 'id="reused"' not in (run / "report.html").read_text()


def test_changing_the_students_training_retrains_the_student_and_baseline_and_reuses_the_teacher(
        first_run, run, cli):
    project, _ = first_run
    before = train_files(run)
    recipe = write_recipe(project, "longer.yaml", f"{ORT_FP32}, {ORT_INT8}", student_iterations=25)
    result = cli("run", recipe, "--out", run)
    assert result.code == 0, result.err
    models = report(run)["models"]
    for role in ("student", "baseline"):
        assert not models[role]["training"].get("reused") and models[role]["training"]["iterations"] == 25
    # the teacher's training key leaves out the student and distill sections: its training, export and engine
    # are all reused
    assert models["teacher"]["training"].get("reused") is True
    assert set(report(run).get("reused_exports", {})) == {"teacher.onnx"}
    assert {n for n, e in engines(run).items() if e.get("reused")} == {"teacher_onnxruntime_fp32.onnx"}
    assert "reused engine student" not in result.out
    # the cache holds this run's trainings only: the first run's student and baseline checkpoints are pruned
    after = train_files(run)
    teacher = {name for name in before if name.startswith("teacher-")}
    assert len(after) == 3 and set(after) & set(before) == teacher and len(teacher) == 1
    assert len(entries(run, "export")) == 3 and len(entries(run, "int8")) == 1


def test_a_damaged_cached_file_is_rebuilt_not_reused_and_unchanged_int8_builds_keep_their_gate(first_run, run,
                                                                                                 cli):
    project, _ = first_run
    gate = engines(run)["student_onnxruntime_int8.onnx"]["int8_gate"]
    damaged_engine = entry_file(run, "engine", "student_onnxruntime_fp32.onnx")
    damaged_export = entry_file(run, "export", "teacher.onnx")
    for path in (damaged_engine, damaged_export):
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF  # one flipped byte, same size
        path.unlink()  # (a hard link to the published file: damage the cache's copy only)
        path.write_bytes(bytes(data))
    result = cli("run", write_recipe(project, "base.yaml", f"{ORT_FP32}, {ORT_INT8}"), "--out", run)
    assert result.code == 0, result.err
    built = engines(run)
    assert "reused" not in built["student_onnxruntime_fp32.onnx"]
    assert built["student_onnxruntime_fp32.onnx"]["parity"]["passed"] is True
    assert "teacher.onnx" not in report(run)["reused_exports"]
    assert {"student.onnx", "baseline.onnx"} <= set(report(run)["reused_exports"])
    # the rebuilt files are cached again, intact
    from compressor.core.files import sha256_file

    for kind, primary in (("engine", "student_onnxruntime_fp32.onnx"), ("export", "teacher.onnx")):
        path = entry_file(run, kind, primary)
        digest = json.loads((path.parents[1] / "entry.json").read_text())["artifacts"]["main"]["files"][primary]
        assert sha256_file(path) == digest
    # the INT8 build (calibration, quantization, accuracy gate) is reused with the gate's record of its run
    int8 = built["student_onnxruntime_int8.onnx"]
    assert int8["reused"]["kind"] == "int8" and int8["int8_gate"] == gate
    assert "reused engine student_onnxruntime_int8 (same ONNX, options, calibration data" in result.out
    markdown = (run / "report.md").read_text()
    assert "the INT8 accuracy-gate figures of reused engines: by the run that built them" in markdown
    assert "its accuracy-gate figures are from that run" in markdown
