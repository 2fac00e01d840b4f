"""The device's random feed (from manifest spec dicts) draws the very arrays the toolchain's does."""
from __future__ import annotations

import numpy as np
import pytest

from compressor.core.feeds import random_feed as core_random_feed
from compressor.core.tensor_spec import TensorSpec, parse_specs
from compressor.runtime.feeds import random_feed as runtime_random_feed

SPEC_SETS = {
    "float ranges": ["image:Nx3x8x8:float32:-2..3", "scale:1x4:float16:0.5..0.75", "plain:2x5:float64"],
    "integer ranges": ["tokens:Nx12:int64:0..2328", "small:Nx3:int32:-5..5", "flags:4:uint8", "codes:2x2:int8:3..4"],
    "bool": ["mask:Nx6:bool", "ranged_mask:3x3:bool:0..1"],
    "dynamic axes": ["frames:Nx2x8:float32:0..255", "crop:Bx3xH=16xW=12:float32", "ids:TxL=7:int64:0..9"],
    "mixed": ["template:Nx3x16x16:float32:0..1", "search:Nx3x32x32:float32", "tokens:Nx10:int64:8..264",
              "valid:Nx10:bool"],
}


def _manifest_inputs(specs: list[TensorSpec]) -> list[dict]:
    """Spec dicts as a bundle manifest stores them (``TensorSpec.to_dict``)."""
    return [spec.to_dict() for spec in specs]


def _assert_same(want, have):
    assert list(want) == list(have)
    for name, array in want.items():
        assert have[name].dtype == array.dtype and have[name].shape == array.shape, name
        np.testing.assert_array_equal(have[name], array, err_msg=name)


@pytest.mark.parametrize("texts", list(SPEC_SETS.values()), ids=list(SPEC_SETS))
@pytest.mark.parametrize("batch", [None, 1, 3])
@pytest.mark.parametrize("seed", [0, 7])
def test_runtime_random_feed_equals_core(texts, batch, seed):
    specs = parse_specs(texts)
    want = core_random_feed(specs, batch=batch, rng=np.random.default_rng(seed))
    _assert_same(want, runtime_random_feed(_manifest_inputs(specs), batch, seed))


def test_dynamic_batch_axis_follows_batch_and_defaults_to_one():
    specs = _manifest_inputs(parse_specs(["x:Nx3:float32", "y:N=4x2:int64"]))
    assert runtime_random_feed(specs, 5)["x"].shape == (5, 3)
    assert runtime_random_feed(specs)["x"].shape == (1, 3) and runtime_random_feed(specs)["y"].shape == (4, 2)


def test_a_symbolic_axis_without_an_example_is_a_one_line_error():
    specs = _manifest_inputs([TensorSpec("x", ("N", "H"), "float32")])
    with pytest.raises(ValueError, match="symbolic dimension 'H'"):
        runtime_random_feed(specs, 2)
