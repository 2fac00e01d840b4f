"""Property tests: random input to the recipe parser, the input-spec parser and the CAN log parser only ever
raises the parser's own one-line error, never another exception."""
from __future__ import annotations

import string

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compressor.core.errors import CompressError, InputSpecError
from compressor.core.tensor_spec import parse_specs
from compressor.distill.config import ConfigError
from compressor.distill.recipe import parse_recipe, parse_recipe_text
from compressor.runtime.can_log import CanLogError, parse_lines

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEYS = ["name", "task", "teacher", "student", "data", "distill", "deploy", "quick", "seed", "model", "train",
        "iterations", "batch", "lr", "targets", "target", "precision", "quantizer", "losses", "weight", "source",
        "scale", "export_input", "window", "split", "static_shapes", "calibration_samples"]
TASK_NAMES = ["classification", "embedding", "super-resolution", "can-intrusion", "tracking", "text-embedding"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                    st.text(max_size=20), st.sampled_from(TASK_NAMES + ["onnxruntime", "openvino", "int8", "nncf"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=5),
                      max_leaves=25)
recipes = st.fixed_dictionaries({"name": scalars, "task": st.sampled_from(TASK_NAMES) | scalars},
                                optional={k: values for k in KEYS[2:9]})


def _one_line(exc: BaseException) -> None:
    assert "\n" not in str(exc) and str(exc), repr(exc)


@FAST
@given(data=recipes, quick=st.booleans())
def test_a_random_recipe_mapping_is_accepted_or_one_config_line(data, quick):
    try:
        parse_recipe(data, "random.yaml", quick=quick)
    except CompressError as exc:
        _one_line(exc)


@FAST
@given(text=st.text(max_size=300) | st.binary(max_size=300))
def test_random_recipe_text_is_accepted_or_one_config_line(text):
    try:
        parse_recipe(parse_recipe_text(text, "random.yaml"), "random.yaml")
    except CompressError as exc:
        _one_line(exc)


@FAST
@given(data=values)
def test_random_yaml_documents_are_accepted_or_one_config_line(data):
    text = yaml.safe_dump({"name": "x", "task": "classification", "student": data, "teacher": data})
    try:
        parse_recipe(parse_recipe_text(text.encode(), "random.yaml"), "random.yaml", quick=True)
    except CompressError as exc:
        _one_line(exc)


spec_text = st.lists(st.sampled_from(list("x:.=N1234567890-H_") + ["int64", "float32", "bool", "uint8", "inf",
                                                                     "nan", "..", "e9", "W=", "\n", "²"]),
                     max_size=20).map("".join)


@FAST
@given(texts=st.lists(spec_text | st.text(max_size=30), min_size=1, max_size=3))
def test_random_input_specs_parse_or_raise_one_input_spec_line(texts):
    try:
        specs = parse_specs(texts)
    except InputSpecError as exc:
        _one_line(exc)
        return
    for spec in specs:  # a parsed spec is usable: finite range, a shape that fits in memory
        assert spec.low is None or (abs(spec.low) < float("inf") and spec.low < spec.high)
        try:
            spec.concrete_shape(1)
        except InputSpecError as exc:
            _one_line(exc)


can_line = st.lists(st.sampled_from(["1478198376.1", ",", "0316", "8", "05", "R", "T", "Timestamp:", "ID:", "DLC:",
                                     " ", "(1436509052.2)", "can0", "123#DEADBEEF", "#R", "zz", "-1", "99", "²", "_"]),
                    max_size=16).map("".join)


@FAST
@given(lines=st.lists(can_line | st.text(alphabet=string.printable, max_size=60), max_size=8),
       skip=st.booleans())
def test_random_can_lines_parse_or_raise_one_can_log_line(lines, skip):
    try:
        frames, skipped = parse_lines([line + "\n" for line in lines], source="random.log", skip_malformed=skip)
    except CanLogError as exc:
        _one_line(exc)
        return
    assert len(frames) + skipped <= len(lines)


@FAST
@given(blob=st.binary(max_size=400))
def test_random_bytes_as_a_can_log_parse_or_raise_one_can_log_line(blob):
    text = blob.decode("ascii", errors="replace")
    try:
        parse_lines(text.splitlines(keepends=True), source="random.log")
    except CanLogError as exc:
        _one_line(exc)


@pytest.mark.parametrize("line", ["1,02,²,x,R", "1,²,1,00,R", "(1) can0 1_0#00", "1,0_1,0,R"])
def test_can_lines_with_non_ascii_digits_or_underscores_are_one_line(line):
    with pytest.raises(CanLogError, match="line 1"):
        parse_lines([line], source="x.csv")


def test_config_errors_never_break_lines_even_for_keys_that_do():
    with pytest.raises(ConfigError) as caught:
        parse_recipe({"name": "x", "task": "classification", "bad\nkey": 1, "teacher": {"model": "m"},
                      "student": {"model": "m"}}, "r.yaml")
    _one_line(caught.value)
