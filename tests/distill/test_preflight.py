"""``compress run`` validates the whole recipe and its data before the first training step: each mistake is one
line on stderr, exit 2, nothing changed outside the run folder, and no checkpoint written."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tests.support import (
    assert_no_partial_files,
    assert_one_line_error,
    assert_untouched_outside,
    tree_state,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "digits"


@pytest.fixture(scope="module")
def digits_data(tmp_path_factory) -> Path:
    """The digits example's images (30 + 10 per class), written once for the module."""
    out = tmp_path_factory.mktemp("digits") / "data"
    subprocess.run([sys.executable, str(EXAMPLE / "make_data.py"), "--out", str(out), "--train-per-class", "6",
                    "--val-per-class", "2"], check=True, capture_output=True)
    return out


@pytest.fixture
def project(tmp_path, digits_data) -> Path:
    """A copy of examples/digits with its data, in tmp_path."""
    folder = tmp_path / "project"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("data", "runs", "__pycache__"))
    shutil.copytree(digits_data, folder / "data")
    return folder


def _recipe(project: Path, change) -> Path:
    data = yaml.safe_load((project / "recipe.yaml").read_text())
    change(data)
    path = project / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _refused(cli, tmp_path: Path, recipe: Path, *needles: str, extra: tuple[str, ...] = ()) -> None:
    """``compress run RECIPE`` fails in one line before training: no checkpoint, nothing changed outside."""
    out = tmp_path / "run"
    before = tree_state(tmp_path)
    result = cli("run", recipe, "--quick", "--out", out, *extra)
    assert_one_line_error(result, *needles)
    assert not (out / "checkpoints").exists()
    assert "training" not in result.out  # no stage past the preflight announced
    assert_untouched_outside(tmp_path, before, out)
    assert_no_partial_files(tmp_path)


def _append_target(section: str, entry: dict):
    def change(data):
        holder = data["quick"] if section == "quick" else data
        holder["deploy"]["targets"].append(entry)
    return change


def _set(path: str, value):
    def change(data):
        keys = path.split(".")
        for holder in (data, data["quick"]):
            node = holder
            for key in keys[:-1]:
                node = node.setdefault(key, {})
            node[keys[-1]] = value
    return change


@pytest.mark.parametrize("change, needles", [
    (_append_target("full", {"target": "openvino", "precision": "int8", "quantizer": "nncff"}),
     ("without --quick", "deploy.targets[3]", "'nncff'", "did you mean 'nncf'")),
    (_append_target("quick", {"target": "openvino", "precision": "int8", "quantizer": "nncff"}),
     ("deploy.targets[2]", "'nncff'")),
    (_append_target("quick", {"target": "openvino", "precision": "fp32", "static_shape": True}),
     ("option 'static_shape' does not apply", "did you mean 'static_shapes'")),
    (_set("distill.train.batch", 0), ("distill.train.batch: must be at least 1, got 0",)),
    (_set("distill.train.iterations", -5), ("distill.train.iterations: must be at least 0, got -5",)),
    (_set("distill.train.lr", float("nan")), ("distill.train.lr", "finite")),
    (_set("distill.train.lr", 0.0), ("distill.train.lr: must be above 0",)),
    (_set("teacher.train.batch", -1), ("teacher.train.batch: must be at least 1",)),
    (_set("data.val_fraction", 1.5), ("data.val_fraction: must be in (0, 1)",)),
    (_set("deploy.profile_seconds", float("inf")), ("deploy.profile_seconds", "finite")),
    (_set("deploy.profile_seconds", 1e9), ("deploy.profile_seconds", "must be in (0, 3600]")),
    (_set("deploy.profile_iterations", 10**12), ("deploy.profile_iterations", "must be in [1,")),
    (_set("deploy.calibration_samples", 0), ("deploy.calibration_samples",)),
    (_set("deploy.compare_batches", [1, 0]), ("deploy.compare_batches[1]: must be at least 1",)),
    (lambda d: d.update(seed=2**40), ("seed: must be in [0, 4.29497e+09]",)),
    (lambda d: d["distill"]["losses"].append({"name": "ce", "weight": -1}), ("distill.losses[2].weight",)),
])
def test_a_recipe_mistake_is_one_line_before_training(cli, tmp_path, project, change, needles):
    _refused(cli, tmp_path, _recipe(project, change), *needles)


def test_a_student_file_that_is_not_python_is_named(cli, tmp_path, project):
    (project / "student.txt").write_text((project / "student.py").read_text())
    recipe = _recipe(project, lambda d: d["student"].update(model="student.txt:build"))
    _refused(cli, tmp_path, recipe, "student.txt is not a .py file")


def test_a_corrupt_validation_image_is_named_before_training(cli, tmp_path, project):
    victim = sorted((project / "data" / "val" / "3").glob("*.png"))[0]
    victim.write_bytes(victim.read_bytes()[:40])  # truncated PNG
    _refused(cli, tmp_path, project / "recipe.yaml", "cannot read image", victim.name)


def test_a_truncated_teacher_checkpoint_is_named_without_torchs_unsafe_advice(cli, tmp_path, project):
    weights = tmp_path / "teacher.pth"
    torch.save({"w": torch.zeros(64, 64)}, weights)
    weights.write_bytes(weights.read_bytes()[:3000])
    result_needles = ("cannot read weights", "teacher.pth", "truncated")
    _refused(cli, tmp_path, project / "recipe.yaml", *result_needles, extra=("--teacher-weights", str(weights)))


@pytest.mark.parametrize("seed", ["-1", str(2**32), str(10**30)])
def test_a_seed_numpy_and_torch_cannot_take_is_one_line(cli, tmp_path, project, seed):
    _refused(cli, tmp_path, project / "recipe.yaml", "--seed: must be in 0..4294967295", extra=("--seed", seed))


@pytest.mark.parametrize("content, needle", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\x00\x01", "not UTF-8"),
    (b"name: x\x00\x07\ntask: classification\n", "control character"),
    (b"name: x\ntask: [\n", "not valid YAML"),
    (b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n", "nests too deeply"),
    (b"".join(b"  " * i + b"k:\n" for i in range(600)), "nests too deeply"),
    (b"".join(b"  " * i + b"k:\n" for i in range(40)), "nests too deeply"),
    (b"# " + b"x" * (2 << 20) + b"\n", "a recipe is at most"),
    (b"- 1\n- 2\n", "must be a mapping"),
    (b"a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + b"".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n".encode()
        for p, c in zip("abcdefgh", "bcdefghi")), "more than"),
])
def test_a_recipe_that_is_not_yaml_text_is_one_line(cli, tmp_path, content, needle):
    recipe = tmp_path / "garbage.yaml"
    recipe.write_bytes(content)
    _refused(cli, tmp_path, recipe, needle)


def test_a_super_resolution_recipe_is_checked_before_training(cli, tmp_path):
    from PIL import Image

    good, mixed = tmp_path / "good", tmp_path / "mixed"
    for folder in (good, mixed):
        folder.mkdir()
        Image.new("RGB", (256, 256), (10, 20, 30)).save(folder / "good.png")
    (mixed / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    base = {"name": "sr", "task": "super-resolution", "teacher": {"model": "span_tiny"},
            "student": {"model": "span_tiny"}, "data": {"train": str(good), "val": str(good)}}
    cases = [({"data": {"scale": 0}}, "data.scale: must be at least 1"),
             ({"export_input": "image:Nx3xHx64:float32:0..1"}, "symbolic dimension 'H' needs an example size"),
             ({"export_input": "image:Nx1x64x64:float32:-inf..inf"}, "must be finite"),
             ({"profile_input": "tokens:1x16:int64:0..9"}, "profile_input", "one RGB image"),
             ({"distill": {"train": {"patch": 30}}}, "distill.train.patch: 30 is not a multiple of data.scale (4)"),
             ({"data": {"val": str(tmp_path / "missing")}}, "image folder not found"),
             ({"data": {"val": str(mixed)}}, "cannot read image", "broken.png"),
             ({"data": {"train": str(mixed)}}, "cannot read image", "broken.png")]
    for change, *needles in cases:
        recipe = tmp_path / "sr.yaml"
        recipe.write_text(yaml.safe_dump({**base, **change,
                                          "data": {**base["data"], **change.get("data", {})}}))
        _refused(cli, tmp_path, recipe, *needles)


def test_a_five_row_can_capture_says_how_many_frames_it_needs(cli, tmp_path):
    capture = tmp_path / "DoS_dataset.csv"
    capture.write_text("".join(f"1478198376.{i:06d},0316,8,05,21,68,09,21,21,00,6f,R\n" for i in range(5)))
    recipe = tmp_path / "ids.yaml"
    recipe.write_text(yaml.safe_dump({"name": "ids", "task": "can-intrusion", "teacher": {"model": "can_bert_tiny"},
                                      "student": {"model": "lsfidm_bilstm"}, "data": {"source": str(capture)}}))
    _refused(cli, tmp_path, recipe, "holds no windows", "5 frame(s)", "needs at least")
