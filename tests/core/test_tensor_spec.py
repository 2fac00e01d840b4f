import numpy as np
import pytest

from compressor.core.errors import InputSpecError
from compressor.core.tensor_spec import TensorSpec, parse_specs


def test_parse_full_form_round_trips():
    spec = TensorSpec.parse("image:Nx3xH=64xW=48:float16:-1..1")
    assert spec.shape == ("N", 3, "H", "W")
    assert spec.examples == {"H": 64, "W": 48}
    assert (spec.dtype, spec.low, spec.high) == ("float16", -1.0, 1.0)
    assert TensorSpec.parse(spec.format()) == spec
    assert TensorSpec.from_dict(spec.to_dict()) == spec


def test_defaults_and_concrete_shape():
    spec = TensorSpec.parse("x:1x3x8x8")
    assert spec.dtype == "float32" and not spec.is_dynamic
    assert TensorSpec.parse("x:Nx3x8x8").concrete_shape(batch=5) == (5, 3, 8, 8)
    with pytest.raises(InputSpecError, match="H=64"):
        TensorSpec.parse("x:Nx3xHxW").concrete_shape(batch=1)


@pytest.mark.parametrize("text, problem", [
    ("image", "NAME:SHAPE"),
    ("image:1x3x0x4", "bad dimension"),
    ("image:1x3x-4", "bad dimension"),
    ("image:1x3:float33", "did you mean 'float32'"),
    ("tokens:Nx8:int64:5..1", "LOW < HIGH"),
    ("a:b:c:d:e", "NAME:SHAPE"),
])
def test_bad_declarations_name_the_problem(text, problem):
    with pytest.raises(InputSpecError, match=problem):
        TensorSpec.parse(text)


def test_duplicate_names_refused():
    with pytest.raises(InputSpecError, match="twice"):
        parse_specs(["x:1x2", "x:1x3"])


def test_check_reports_dtype_rank_and_dim():
    spec = TensorSpec.parse("x:Nx3x4x4")
    assert spec.check(np.zeros((2, 3, 4, 4), np.float32)) is None
    assert "dtype float64" in spec.check(np.zeros((2, 3, 4, 4)))
    assert "rank 4" in spec.check(np.zeros((3, 4, 4), np.float32))
    assert "expected Nx3x4x4" in spec.check(np.zeros((2, 3, 5, 4), np.float32))
