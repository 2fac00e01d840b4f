"""Hostile ``.npz`` inputs and input specs: one line, exit 2, checked before anything is inflated or allocated."""
from __future__ import annotations

import zipfile

import numpy as np
import pytest

from compressor.core.errors import InputSpecError
from compressor.core.feeds import load_npz_feeds, random_feed, read_npz
from compressor.core.tensor_spec import TensorSpec, fill_value_ranges
from tests.support import (
    assert_no_partial_files,
    assert_one_line_error,
    assert_untouched_outside,
    tree_state,
)

SPECS = [TensorSpec.parse("x:Nx3x8x8:float32:0..1")]


def _bomb(path, mib: int) -> None:
    """An .npz whose one array inflates to ``mib`` MiB of zeros (a few KiB on disk)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("x.npy", "w", force_zip64=True) as member:
            header = {"descr": "<f4", "fortran_order": False, "shape": (mib * 2**18 // 192, 3, 8, 8)}
            np.lib.format.write_array_header_1_0(member, header)
            chunk = bytes(1 << 20)
            for _ in range(mib):
                member.write(chunk)


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    path = tmp_path_factory.mktemp("bomb") / "bomb.npz"
    _bomb(path, 1100)
    return path


def test_a_zip_bomb_is_refused_from_its_declared_size_without_inflating(bomb):
    assert bomb.stat().st_size < 5 << 20
    with pytest.raises(InputSpecError, match="inflates to 1100.0 MiB of arrays; at most 1024 MiB"):
        load_npz_feeds(bomb, SPECS)


def test_an_array_header_beyond_the_limit_or_off_the_spec_is_refused_before_loading(tmp_path):
    np.savez(tmp_path / "wrong.npz", x=np.zeros((2, 3, 9, 8), np.float32))
    with pytest.raises(InputSpecError, match=r"array 'x' has shape \[2, 3, 9, 8\], input 'x' is Nx3x8x8"):
        load_npz_feeds(tmp_path / "wrong.npz", SPECS)
    np.savez(tmp_path / "rank.npz", x=np.zeros((3,), np.float32))
    with pytest.raises(InputSpecError, match="rank 4, or 5"):
        load_npz_feeds(tmp_path / "rank.npz", SPECS)
    np.savez(tmp_path / "big.npz", x=np.zeros((4, 3, 8, 8), np.float32))
    with pytest.raises(InputSpecError, match="at most 0 MiB"):
        read_npz(tmp_path / "big.npz", limit=1000)


@pytest.mark.parametrize("make, needle", [
    (lambda p: p.write_bytes(b""), "truncated or not a zip archive"),
    (lambda p: p.write_bytes(b"not a zip at all" * 10), "truncated or not a zip archive"),
    (lambda p: zipfile.ZipFile(p, "w").close(), "holds no arrays"),
    (lambda p: (np.savez(p, x=np.zeros((2, 3, 8, 8), np.float32)), p.write_bytes(p.read_bytes()[:-40])),
     "truncated or not a zip archive"),
    (lambda p: (np.savez(p, x=np.zeros((2, 3, 8, 8), np.float32)), p.write_bytes(p.read_bytes()[:300])),
     "not a readable .npz"),
    (lambda p: np.savez(p, x=np.array([{"a": 1}], dtype=object)), "Python objects"),
    (lambda p: np.savez(p, x=np.zeros((0, 3, 8, 8), np.float32)), r"has shape \[0, 3, 8, 8\]"),
    (lambda p: np.savez(p, x=np.zeros((0, 2, 3, 8, 8), np.float32)), "0 samples"),
])
def test_broken_npz_inputs_are_one_line(tmp_path, make, needle):
    path = tmp_path / "inputs.npz"
    make(path)
    with pytest.raises(InputSpecError, match=needle) as caught:
        load_npz_feeds(path, SPECS)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)


def test_compare_with_a_bomb_or_empty_npz_is_one_line_exit_2(cli, exported, tmp_path, bomb):
    artifact = exported["tiny_convnet"]
    (tmp_path / "bomb.npz").symlink_to(bomb)
    zipfile.ZipFile(tmp_path / "empty.npz", "w").close()
    before = tree_state(tmp_path)
    assert_one_line_error(cli("compare", "tiny_convnet", artifact.path, "--inputs", tmp_path / "bomb.npz"),
                          "bomb.npz inflates to")
    assert_one_line_error(cli("compare", "tiny_convnet", artifact.path, "--inputs", tmp_path / "empty.npz"),
                          "empty.npz holds no arrays")
    assert_untouched_outside(tmp_path, before)
    assert_no_partial_files(tmp_path)


@pytest.mark.parametrize("text, needle", [
    ("x:1x3:float32:-inf..inf", "must be finite"),
    ("x:1x3:float32:0..1e400", "must be finite"),
    ("x:1x3:float16:0..1e6", "does not fit float16"),
    ("x:1x3:int8:0..300", "does not fit int8"),
    ("x:99999999x99999999x9999", "one input is at most 4 GiB"),
    ("x:Nx99999999999", "bad dimension"),
    ("x:Nx²", "bad dimension"),
    ("x:N\n", "control characters"),
    (" x:1x3", "spaces or control characters"),
])
def test_absurd_input_specs_are_one_line(text, needle):
    with pytest.raises(InputSpecError, match=needle) as caught:
        TensorSpec.parse(text)
    assert "\n" not in str(caught.value)


def test_a_huge_batch_is_refused_before_allocating():
    spec = TensorSpec.parse("image:Nx3x512x512:float32:0..1")
    with pytest.raises(InputSpecError, match="image.*GiB; one input is at most 4 GiB"):
        random_feed([spec], batch=10**6)


def test_cli_export_with_an_infinite_range_or_huge_shape_is_one_line(cli, tmp_path):
    before = tree_state(tmp_path)
    assert_one_line_error(cli("export", "tiny_convnet", "--input", "image:Nx3x32x32:float32:-inf..inf", "--out",
                              tmp_path / "out"), "must be finite")
    assert_one_line_error(cli("export", "tiny_convnet", "--input", "image:99999x3x99999x99999", "--out",
                              tmp_path / "out"), "at most 4 GiB")
    assert_untouched_outside(tmp_path, before, tmp_path / "out")


def test_integer_inputs_need_a_range_from_the_spec_the_model_or_examples_and_say_which():
    bare = [TensorSpec.parse("tokens:Nx16:int64")]
    with pytest.raises(InputSpecError, match=r"int64 without a value range: give one, e\.g\. "
                                             r"tokens:Nx16:int64:0\.\.999"):
        fill_value_ranges(bare)
    notes = []
    [taken] = fill_value_ranges(bare, declared=["tokens:Nx16:int64:0..256"], note=notes.append)
    assert (taken.low, taken.high) == (0, 256) and notes == ["input 'tokens': value range 0..256 from the model's "
                                                             "input_specs"]
    [sampled] = fill_value_ranges(bare, samples={"tokens": np.array([[3, 7], [999, 5]])}, note=notes.append)
    assert (sampled.low, sampled.high) == (3, 1000) and "from the example values" in notes[-1]
    flags = fill_value_ranges([TensorSpec.parse("mask:Nx4:bool")])  # bool inputs need no range
    assert random_feed(flags, batch=2)["mask"].dtype == bool


def test_random_feed_says_when_an_integer_input_has_no_range(caplog):
    feed = random_feed([TensorSpec("ids", ("N", 4), "int64")], batch=2)
    assert set(np.unique(feed["ids"])) <= {0, 1}
    assert "declares no value range" in caplog.text and "ids" in caplog.text
