"""``compress run`` replaces its folder's previous run only when the new one is complete: a run that fails after
training (at export) or is interrupted (in the INT8 accuracy gate) leaves the previous checkpoints, ONNX files,
engines, bundle and report exactly as they were and no staging folder or temporary folder behind; a rerun with
fewer targets leaves no engine the new report does not list."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from compressor.core.errors import ExportError
from tests.support import (
    assert_no_partial_files,
    assert_one_line_error,
    assert_untouched_outside,
    tree_state,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "digits"

RECIPE = """name: digits
task: classification
seed: 0
teacher: {{model: teacher.py:build, train: {{iterations: 20, lr: 0.01, batch: 32}}}}
student: {{model: student.py:build, args: {{width: 8}}}}
data: {{source: data}}
distill:
  losses: [{{name: hinton, weight: 0.5, temperature: 4}}, {{name: ce, weight: 0.5}}]
  train: {{iterations: 20, lr: 0.01, batch: 32}}
deploy:
  targets: [{targets}]
  int8_budget: 1.0
  calibration_samples: 8
  compare_count: 1
  profile_seconds: 0.05
  profile_iterations: 3
  bundle: {bundle}
"""
FP32 = "{target: onnxruntime, precision: fp32}"
INT8 = "{target: onnxruntime, precision: int8}"


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """The digits example with its data, and recipes for two targets (with a bundle) and for one."""
    folder = tmp_path_factory.mktemp("project") / "digits"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("data", "runs", "__pycache__"))
    subprocess.run([sys.executable, "make_data.py", "--out", "data", "--train-per-class", "8", "--val-per-class",
                    "3"], cwd=folder, check=True, timeout=120)
    (folder / "two.yaml").write_text(RECIPE.format(targets=f"{FP32}, {INT8}", bundle="true"))
    (folder / "one.yaml").write_text(RECIPE.format(targets=FP32, bundle="false"))
    return folder


@pytest.fixture
def system_temp(tmp_path, monkeypatch) -> Path:
    """The system temporary directory, made empty and private to the test, to show nothing is left there."""
    folder = tmp_path / "systemp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _engines_listed(run: Path) -> set[str]:
    return {Path(a["path"]).name for a in json.loads((run / "report.json").read_text())["artifacts"]}


@pytest.mark.slow
def test_a_failed_or_interrupted_rerun_keeps_the_previous_run_and_a_smaller_rerun_replaces_it(
        project, tmp_path, cli, monkeypatch, system_temp):
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("the user's own file")
    first = cli("run", project / "two.yaml", "--out", run)
    assert first.code == 0, first.err
    names = sorted(p.name for p in run.iterdir())
    assert names == [".cache", "bundle", "checkpoints", "engines", "notes.txt", "onnx", "report.html", "report.json",
                     "report.md"]
    for artifact in json.loads((run / "report.json").read_text())["artifacts"]:
        assert Path(artifact["path"]).is_file() and Path(artifact["path"]).parent == (run / "engines").resolve()
    for sidecar in run.rglob("*.artifact.json"):  # sidecars name files where they are, not in the staging folder
        assert ".run-" not in sidecar.read_text(), sidecar
    previous = tree_state(tmp_path, ignore=(".cache",))  # the stage cache is resumable state, kept on failure

    # fails at export (--fresh: not taken from the stage cache), after training: nothing of the previous run changes, nothing is left over
    def export_fails(*args, **kwargs):
        raise ExportError("the exporter refused the model")

    monkeypatch.setattr("compressor.distill.pipeline.export_onnx", export_fails)
    assert_one_line_error(cli("run", project / "two.yaml", "--out", run, "--fresh"), "the exporter refused the model")
    assert tree_state(tmp_path, ignore=(".cache",)) == previous
    assert_no_partial_files(tmp_path)
    monkeypatch.undo()
    monkeypatch.setattr(tempfile, "tempdir", str(system_temp))

    # interrupted in the INT8 accuracy gate, after its first engine was built
    import compressor.targets.accuracy_gate as accuracy_gate

    def interrupted_gate(build, *args, **kwargs):
        build(())
        raise KeyboardInterrupt

    monkeypatch.setattr(accuracy_gate, "gate_int8", interrupted_gate)
    result = cli("run", project / "two.yaml", "--out", run, "--fresh")
    assert result.code == 130, result
    assert tree_state(tmp_path, ignore=(".cache",)) == previous
    assert_no_partial_files(tmp_path)
    assert list(system_temp.iterdir()) == []
    monkeypatch.undo()

    # a rerun with fewer targets and no bundle: engines/ and bundle/ are the new run's only
    before = tree_state(tmp_path)
    again = cli("run", project / "one.yaml", "--out", run)
    assert again.code == 0, again.err
    assert sorted(p.name for p in run.iterdir()) == [".cache", "checkpoints", "engines", "notes.txt", "onnx",
                                                    "report.html", "report.json", "report.md"]
    engines = {p.name for p in (run / "engines").iterdir() if not p.name.endswith(".artifact.json")}
    assert engines == _engines_listed(run) == {"student_onnxruntime_fp32.onnx", "teacher_onnxruntime_fp32.onnx",
                                               "baseline_onnxruntime_fp32.onnx"}
    assert {p.name for p in (run / "engines").glob("*.artifact.json")} == {f"{e}.artifact.json" for e in engines}
    assert (run / "notes.txt").read_text() == "the user's own file"
    assert_untouched_outside(tmp_path, before, run)
    assert_no_partial_files(tmp_path)
    report = cli("report", run)
    assert report.code == 0 and "3 engine(s) measured here" in report.out
