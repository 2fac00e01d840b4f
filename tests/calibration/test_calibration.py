"""Calibration sources: folders, callables, validation errors, cache keys, and INT8 builds from the CLI."""
import numpy as np
import pytest
from PIL import Image

from compressor.calibration import (
    CalibrationError,
    from_callable,
    from_folder,
    representative,
    validate_feeds,
)
from compressor.calibration.cache import cache_path, data_hash
from compressor.core.tensor_spec import TensorSpec
from tests.support import assert_one_line_error

IMAGE = TensorSpec.parse("image:Nx3xH=16xW=16:float32:0..1")


def test_validation_names_each_problem():
    good = {"image": np.zeros((1, 3, 16, 16), np.float32)}
    assert len(validate_feeds([good, good], [IMAGE])) == 2
    with pytest.raises(CalibrationError, match="no calibration samples"):
        validate_feeds([], [IMAGE])
    bad = {"image": np.full((1, 3, 16, 16), np.nan, np.float32)}
    with pytest.raises(CalibrationError, match="sample 1: input 'image' holds NaN or Inf"):
        validate_feeds([good, bad], [IMAGE])
    with pytest.raises(CalibrationError, match="rank 4"):
        validate_feeds([{"image": np.zeros((3, 16, 16), np.float32)}], [IMAGE])
    with pytest.raises(CalibrationError, match="the model takes"):
        validate_feeds([{"picture": good["image"]}], [IMAGE])


def test_folder_of_images_npy_and_npz(tmp_path):
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(tmp_path / "a.png")
    np.save(tmp_path / "b.npy", np.ones((3, 16, 16), np.float32))
    feeds = from_folder(tmp_path, [IMAGE])
    assert [f["image"].shape for f in feeds] == [(1, 3, 16, 16)] * 2
    assert feeds[0]["image"].max() == pytest.approx(128 / 255)
    with pytest.raises(CalibrationError, match="calibration folder not found"):
        from_folder(tmp_path / "nothing", [IMAGE])
    (tmp_path / "empty").mkdir()
    with pytest.raises(CalibrationError, match="no .npy, .npz or image files"):
        from_folder(tmp_path / "empty", [IMAGE])


def test_callable_source(tmp_path):
    source = tmp_path / "feeds.py"
    source.write_text("import numpy as np\n"
                      "def make():\n    return [{'image': np.zeros((1, 3, 16, 16), np.float32)} for _ in range(3)]\n")
    assert len(from_callable(f"{source}:make", [IMAGE])) == 3


def test_representative_sampling_spreads_and_is_reproducible():
    feeds = [{"i": np.array([i])} for i in range(100)]
    picked = representative(feeds, 10, seed=1)
    assert len(picked) == 10 and picked == representative(feeds, 10, seed=1)
    assert max(int(f["i"][0]) for f in picked) > 50


def test_cache_key_changes_with_data_and_model(tmp_path):
    a = [{"x": np.zeros(3, np.float32)}]
    b = [{"x": np.ones(3, np.float32)}]
    assert data_hash(a) != data_hash(b)
    model = tmp_path / "m.onnx"
    model.write_bytes(b"model-one")
    first = cache_path(model, a, "minmax")
    assert first != cache_path(model, b, "minmax") != cache_path(model, a, "entropy")
    model.write_bytes(b"model-two")
    assert cache_path(model, a, "minmax") != first


def test_cli_int8_build_and_bad_calibration(cli, exported, tmp_path):
    onnx_path = exported["tiny_convnet"].path
    calib = tmp_path / "calib"
    calib.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        np.save(calib / f"{i}.npy", rng.random((3, 32, 32), dtype=np.float32))
    result = cli("build", onnx_path, "--target", "onnxruntime", "--precision", "int8", "--calibration", calib,
                 "--out", tmp_path / "out")
    assert result.code == 0, result.err
    compared = cli("compare", "tiny_convnet", tmp_path / "out" / "tiny_convnet_int8.onnx")
    assert compared.code == 0, compared.out
    assert_one_line_error(cli("build", onnx_path, "--target", "openvino", "--precision", "int8", "--out", tmp_path),
                          "needs calibration data")
    np.save(calib / "9.npy", np.full((3, 32, 32), np.inf, np.float32))
    assert_one_line_error(cli("build", onnx_path, "--target", "openvino", "--precision", "int8", "--calibration",
                              calib, "--calibration-samples", "10", "--out", tmp_path), "NaN or Inf")


def test_calibration_passes_divide_the_feeds_and_stay_small():
    from compressor.targets.quantize import calibration_chunk

    assert calibration_chunk(32) == 32 and calibration_chunk(1024) == 64 and calibration_chunk(100) == 50
    assert calibration_chunk(67) == 1 and calibration_chunk(1) == 1
    assert all(n % calibration_chunk(n) == 0 and calibration_chunk(n) <= 64 for n in range(1, 300))
