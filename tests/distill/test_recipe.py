"""Recipes: built-ins validate; bad recipes give one line and exit 2."""
import textwrap

import pytest

from compressor.distill.config import ConfigError
from compressor.distill.recipe import builtin_recipes, load_recipe
from tests.support import assert_one_line_error


def test_builtin_recipe_loads_and_quick_overrides_apply():
    assert "sr-dsclora" in builtin_recipes()
    full, quick = load_recipe("sr-dsclora"), load_recipe("sr-dsclora", quick=True)
    assert full.task == "super-resolution" and full.settings.student.model == "span_tiny"
    assert quick.settings.teacher.train.iterations < full.settings.teacher.train.iterations
    assert quick.settings.teacher.model == full.settings.teacher.model  # overrides merge, not replace


def write(tmp_path, text):
    path = tmp_path / "r.yaml"
    path.write_text(textwrap.dedent(text))
    return path


BASE = """
name: mine
task: super-resolution
teacher: {model: span_28}
student: {model: span_tiny}
"""


@pytest.mark.parametrize("extra, problem", [
    ("teacher: {model: span_28, trian: {}}", "teacher.trian: unknown key (did you mean 'train'?)"),
    ("distill: {train: {iterations: many}}", "distill.train.iterations: expected an integer, got text"),
    ("distill: {loss: {affinity: [1]}}", "distill.loss.affinity: expected a number, got a list"),
    ("dat: {}", "dat: unknown key (did you mean 'data'?)"),
    ("deploy: {targets: [{target: openvinoo}]}", "did you mean 'openvino'"),
    ("deploy: {targets: [{target: onnxruntime, precision: int2}]}", "does not support precision 'int2'"),
    ("deploy: {qat_scheme: openvin}", "deploy.qat_scheme: 'openvin' is not one of qdq, openvino (did you mean "
                                      "'openvino'?)"),
    ("deploy: {static_shapes: sometimes}", "deploy.static_shapes: expected"),
    ("deploy: {int8_float_layers: bf61}", "deploy.int8_float_layers: 'bf61' is not one of fp32, bf16 (did you "
                                          "mean 'bf16'?)"),
])
def test_bad_recipes_name_the_problem(tmp_path, extra, problem):
    text = BASE + extra + "\n"
    if extra.startswith("teacher"):
        text = text.replace("teacher: {model: span_28}\n", "")
    with pytest.raises(Exception, match=problem.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        load_recipe(str(write(tmp_path, text)))


def test_unknown_recipe_and_task(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'sr-dsclora'"):
        load_recipe("sr-dsclra")
    with pytest.raises(Exception, match="unknown task 'super-res'"):
        load_recipe(str(write(tmp_path, BASE.replace("super-resolution", "super-res"))))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_recipe(str(write(tmp_path, "name: [unclosed\n")))


def test_cli_run_bad_input(cli, tmp_path):
    assert_one_line_error(cli("run", tmp_path / "missing.yaml"), "recipe file not found")
    bad = write(tmp_path, BASE + "seed: abc\n")
    assert_one_line_error(cli("run", bad, "--out", tmp_path / "o"), "seed: expected an integer")
    unknown = write(tmp_path, BASE + "teachr: {}\n")
    assert_one_line_error(cli("run", unknown, "--out", tmp_path / "o"), "did you mean 'teacher'")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(cli("run", "sr-dsclora", "--quick", "--data", empty, "--out", tmp_path / "o"),
                          "no images")
    assert_one_line_error(cli("run", "sr-dsclora", "--data", tmp_path / "nowhere", "--out", tmp_path / "o"),
                          "data not found")
    assert_one_line_error(cli("run", "sr-dsclora", "--teacher-weights", tmp_path / "none.pth", "--out",
                              tmp_path / "o"), "teacher weights file not found")
    assert not (tmp_path / "o" / "report.json").exists()
