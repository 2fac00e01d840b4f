"""``compress run`` on your own models: the starter recipe (--init), --teacher/--student/--data, and the
examples/digits project end to end into a bundle that passes ``compress bundle verify``."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from compressor.distill.recipe import load_recipe
from tests.support import assert_one_line_error

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "digits"


def test_init_writes_a_starter_recipe_that_loads_and_never_overwrites(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("run", "--init", "mine", "--teacher", "t.py:build", "--student", "pkg.mod:small")
    assert result.code == 0, result.err
    text = (tmp_path / "mine.yaml").read_text()
    assert "# " in text and "model: t.py:build" in text and "model: pkg.mod:small" in text
    recipe = load_recipe(str(tmp_path / "mine.yaml"), quick=True)
    assert recipe.task == "classification" and recipe.settings.distill.train.iterations == 150
    assert_one_line_error(cli("run", "--init", "mine"), "mine.yaml already exists; not overwriting it")


@pytest.mark.parametrize("args, problem", [
    (("--teacher", "t.py:build"), "needs --teacher, --student and --data"),
    (("sr-dsclora", "--student", "b.py:f"), "trains its own registered architectures"),
    ((str(EXAMPLE / "recipe.yaml"), "--student", "b.py:f", "--task", "embedding"), "--task goes with --teacher"),
    (("--task", "embedding"), "--task goes with --teacher and --student"),
])
def test_own_model_flags_are_checked_in_one_line(cli, args, problem):
    assert_one_line_error(cli("run", *args), problem)


def test_teacher_and_student_flags_replace_a_recipes_models():
    recipe = load_recipe(str(EXAMPLE / "recipe.yaml"), quick=True, models={"student": "wide.py:build"})
    student, teacher = recipe.settings.student, recipe.settings.teacher
    assert student.model == "wide.py:build"
    assert student.args == {} and student.weights is None  # the old model's factory arguments went with it
    original = load_recipe(str(EXAMPLE / "recipe.yaml"), quick=True)
    assert original.settings.student.args == {"width": 8}
    assert teacher == original.settings.teacher and recipe.settings.distill == original.settings.distill


def test_a_model_file_on_the_command_line_is_found_where_compress_runs(cli, tmp_path, monkeypatch):
    project = tmp_path / "project"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("data", "runs", "__pycache__"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "student.py").write_text("from pathlib import Path\nPath(__file__).with_name('imported').touch()\n"
                                          "def build():\n    raise ValueError('not a model')\n")
    monkeypatch.chdir(elsewhere)
    result = cli("run", str(project / "recipe.yaml"), "--student", "student.py:build", "--out", str(tmp_path / "r"))
    assert (elsewhere / "imported").exists()  # not the recipe folder's student.py
    assert_one_line_error(result, "student.py:build")


def _compress(*args, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    script = Path(sys.executable).with_name("compress")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "compressor.cli"]
    result = subprocess.run([*command, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600,
                            env={**os.environ, **(env or {})})
    assert result.returncode == 0, f"compress {' '.join(map(str, args))}\n{result.stdout}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.slow
def test_digits_example_runs_end_to_end_into_a_verified_bundle(tmp_path):
    project = tmp_path / "digits"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("data", "runs", "__pycache__"))
    subprocess.run([sys.executable, "make_data.py", "--out", "data"], cwd=project, check=True, timeout=120)
    _compress("bundle", "keygen", "--out", "keys", cwd=project)  # the user's signing key, kept outside the run
    signing = {"EDGE_COMPRESS_SIGNING_KEY": str(project / "keys" / "bundle-signing.key")}
    ran = _compress("run", "recipe.yaml", "--quick", "--out", "runs/digits", cwd=project, env=signing)
    assert "bundle identity sha256:" in ran.stderr + ran.stdout and "signed by" in ran.stderr + ran.stdout
    run = project / "runs" / "digits"
    report = json.loads((run / "report.json").read_text())
    assert report["task"] == "classification" and report["headline_metric"] == "top1"
    models = report["models"]
    assert set(models) == {"teacher", "student", "baseline"}
    assert models["teacher"]["metric"]["top1"] > 0.8
    assert {"top1", "top5", "agreement"} <= set(models["student"]["metric"])
    assert report["details"]["data"]["counts"] == {"train": 300, "val": 100}
    engines = {(e["role"], e["precision"]): e for e in report["artifacts"]}
    assert all(e["parity"]["passed"] for (role, precision), e in engines.items() if precision == "fp32")
    assert engines[("student", "int8")]["int8_gate"]["passed"]  # the accuracy gate on top-1 held
    verified = _compress("bundle", "verify", report["bundle"], "--key", "keys/bundle-signing.pub", cwd=project)
    assert "self-test passed" in verified.stdout and "signature" in verified.stdout
    # the same models and data from the command line alone, no YAML: the starter's defaults, quick form
    _compress("run", "--teacher", "teacher.py:build", "--student", "student.py:build", "--data", "data", "--quick",
              "--out", "runs/flags", cwd=project)
    flags = json.loads((project / "runs" / "flags" / "report.json").read_text())
    assert flags["task"] == "classification" and flags["details"]["data"]["counts"] == {"train": 300, "val": 100}
    assert set(flags["models"]) == {"teacher", "student", "baseline"}
    assert flags["models"]["teacher"]["metric"]["top1"] > 0.8
    assert (project / flags["bundle"]).is_file()  # relative to where compress ran when --out is
