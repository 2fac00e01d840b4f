"""Recipes: built-ins validate; bad recipes give one line and exit 2."""
import re
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
    # a target entry's own keys are that target's build options, validated by its options class
    ("deploy: {targets: [{target: onnxruntime, static_shapes: true}]}",
     "deploy.targets[0]: option 'static_shapes' does not apply to target onnxruntime (its options: provider, quantizer)"),
    ("deploy: {targets: [{target: onnxruntime, precision: int8, quantizer: nncf}]}",
     "deploy.targets[0]: option 'quantizer' of target onnxruntime: 'nncf' is not one of qdq, dynamic"),
    ("deploy: {targets: [{target: tensorrt, precision: int8, quantizer: nncf}]}",
     "deploy.targets[0]: option 'quantizer' does not apply to target tensorrt"),
    ("deploy: {targets: [{target: openvino, precision: int8, quantizer: nncff}]}",
     "deploy.targets[0]: option 'quantizer' of target openvino: 'nncff' is not one of qdq, nncf (did you mean "
     "'nncf'?)"),
    ("deploy: {targets: [{target: openvino, static_shapes: maybe}]}",
     "deploy.targets[0]: option 'static_shapes' of target openvino: expected a boolean, got text 'maybe'"),
    ("deploy: {targets: [{target: openvino, precision: fp16, float_layers: bf16}]}",
     "deploy.targets[0]: option 'float_layers' of target openvino: bf16 applies to int8 artifacts only, not fp16"),
    ("deploy: {targets: [{target: tensorrt, max_batch: 0}]}",
     "deploy.targets[0]: option 'max_batch' of target tensorrt: must be at least 1, got 0"),
    ("deploy: {reference_target: {target: onnxruntime, provider: 3}}",
     "deploy.reference_target: option 'provider' of target onnxruntime: expected text, got an integer 3"),
    ("deploy: {targets: [{target: openvino, quantizer: 5}]}", "deploy.targets[0].quantizer: expected text"),
])
def test_bad_recipes_name_the_problem(tmp_path, extra, problem):
    text = BASE + extra + "\n"
    if extra.startswith("teacher"):
        text = text.replace("teacher: {model: span_28}\n", "")
    with pytest.raises(Exception, match=re.escape(problem)):
        load_recipe(str(write(tmp_path, text)))


def test_target_options_come_from_the_entry_over_deploy_level_defaults(tmp_path):
    from compressor.targets.onnxruntime import OnnxRuntimeOptions
    from compressor.targets.openvino import OpenVinoOptions
    from compressor.targets.tensorrt import TensorRtOptions

    recipe = load_recipe(str(write(tmp_path, BASE + textwrap.dedent("""
        deploy:
          static_shapes: true
          int8_float_layers: bf16
          targets:
            - {target: onnxruntime, precision: int8, provider: cuda}
            - {target: openvino, precision: fp32}
            - {target: openvino, precision: int8, quantizer: nncf}
            - {target: openvino, precision: int8, static_shapes: false, float_layers: fp32}
            - {target: tensorrt, precision: int8, calibration: implicit, max_batch: 8}
        """))))
    deploy = recipe.deploy
    ort, ov_fp32, ov_nncf, ov_plain, trt = (deploy.target_options(choice) for choice in deploy.targets)
    assert ort == OnnxRuntimeOptions(provider="cuda") and deploy.targets[0].quantizer == "qdq"
    assert ov_fp32 == OpenVinoOptions(static_shapes=True)  # float layers apply to int8 only
    assert ov_nncf == OpenVinoOptions(quantizer="nncf", static_shapes=True, float_layers="bf16")
    assert deploy.targets[2].quantizer == "nncf"
    assert ov_plain == OpenVinoOptions()  # the entry's own options win over the deploy-level defaults
    assert trt == TensorRtOptions(calibration="implicit", max_batch=8)
    assert len(set(deploy.targets)) == 5  # choices stay hashable
    builtin = load_recipe("sr-dsclora").deploy
    assert [builtin.target_options(c).to_sidecar() for c in builtin.targets if c.target == "openvino"] == \
        [{"static_shapes": True}] * 5  # fp32, fp16, bf16 (when: bf16), int8 Q/DQ, NNCF


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
