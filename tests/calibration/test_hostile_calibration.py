"""Hostile or broken calibration input through ``compress build --calibration``: truncated arrays, decompression
bombs, calibration functions that raise or return the wrong thing, and a corrupt calibration cache. Each is one
line on stderr with exit 2 (the cache is named, set aside and rebuilt), nothing changes outside the output
folder and nothing half-written is left."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from PIL import Image

from compressor.calibration import CalibrationError, from_folder
from compressor.calibration.files import MAX_IMAGE_PIXELS
from compressor.core.tensor_spec import TensorSpec
from tests.support import (
    assert_no_partial_files,
    assert_one_line_error,
    assert_untouched_outside,
    tree_state,
)

IMAGE = TensorSpec.parse("image:Nx3xH=32xW=32:float32:0..1")


def good_samples(folder, count=4):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        np.save(folder / f"{index}.npy", rng.random((3, 32, 32), dtype=np.float32))
    return folder


def build_int8(cli, model, calibration, out, target="onnxruntime"):
    return cli("build", model, "--target", target, "--precision", "int8", "--calibration", calibration,
               "--out", out)


def refused(cli, exported, tmp_path, calibration, *needles):
    """Build INT8 from ``calibration`` and assert one line naming ``needles``, nothing written."""
    before = tree_state(tmp_path)
    out = tmp_path / "out"
    assert_one_line_error(build_int8(cli, exported["tiny_convnet"].path, calibration, out), *needles)
    assert_untouched_outside(tmp_path, before, out)
    assert not out.exists() or not list(out.iterdir())


def test_truncated_npz_and_npy(cli, exported, tmp_path):
    folder = good_samples(tmp_path / "calibration")
    whole = tmp_path / "whole.npz"
    np.savez(whole, image=np.ones((1, 3, 32, 32), np.float32))
    (folder / "cut.npz").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    refused(cli, exported, tmp_path, folder, "cut.npz")
    (folder / "cut.npz").unlink()
    np.save(tmp_path / "whole.npy", np.ones((3, 32, 32), np.float32))
    (folder / "cut.npy").write_bytes((tmp_path / "whole.npy").read_bytes()[:1000])
    refused(cli, exported, tmp_path, folder, "cut.npy", "truncated")


def test_npz_that_inflates_far_beyond_its_size(tmp_path):
    """A few kB of zeros declaring 2 GiB: refused from the archive's directory, before inflating."""
    import zipfile

    header = np.lib.format
    with zipfile.ZipFile(tmp_path / "bomb.npz", "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("image.npy", "w", force_zip64=True) as member:
            header.write_array_header_2_0(member, {"descr": "<f4", "fortran_order": False,
                                                   "shape": (512, 3, 512, 512)})
            chunk = bytes(1 << 24)
            for _ in range(128):
                member.write(chunk)
    assert (tmp_path / "bomb.npz").stat().st_size < 5 * 1024**2
    with pytest.raises(CalibrationError, match="bomb.npz inflates to 2048 MiB"):
        from_folder(tmp_path, [IMAGE])


@pytest.mark.parametrize("size", [(14000, 14000), (9000, 9000)], ids=["pil-bomb", "over-our-limit"])
def test_decompression_bomb_png(cli, exported, tmp_path, size):
    folder = good_samples(tmp_path / "calibration")
    Image.new("1", size).save(folder / "bomb.png")  # a few kB that would decode to hundreds of MB
    assert size[0] * size[1] > MAX_IMAGE_PIXELS and (folder / "bomb.png").stat().st_size < 1024**2
    refused(cli, exported, tmp_path, folder, "bomb.png", "decompression bomb")


def test_an_image_that_is_not_one(cli, exported, tmp_path):
    folder = good_samples(tmp_path / "calibration")
    (folder / "fake.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    refused(cli, exported, tmp_path, folder, "fake.png")


FUNCTIONS = """
import numpy as np

def raises():
    raise RuntimeError("the dataset server is down")

def arrays():
    return [np.zeros((1, 3, 32, 32), np.float32) for _ in range(3)]

def one_array():
    return np.zeros((4, 3, 32, 32), np.float32)

def one_dict():
    return {"image": np.zeros((1, 3, 32, 32), np.float32)}

def model():
    import torch
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))

def models():
    import torch
    return [torch.nn.Conv2d(3, 4, 3)]

def nothing():
    pass

def breaks_midway():
    yield {"image": np.zeros((1, 3, 32, 32), np.float32)}
    raise ValueError("corrupt record 2")

def wrong_name():
    return [{"picture": np.zeros((1, 3, 32, 32), np.float32)}]
"""


@pytest.mark.parametrize("function,needles", [
    ("raises", ["raised RuntimeError: the dataset server is down"]),
    ("arrays", ["sample 0 is an array of shape (1, 3, 32, 32), not a feed dict"]),
    ("one_array", ["returned an array of shape (4, 3, 32, 32)"]),
    ("one_dict", ["returned one feed dict"]),
    ("model", ["returned a model (Sequential)"]),
    ("models", ["sample 0 is a model (Conv2d)"]),
    ("nothing", ["returned None"]),
    ("breaks_midway", ["raised ValueError: corrupt record 2"]),
    ("wrong_name", ["has inputs ['picture']"]),
])
def test_calibration_functions_that_misbehave(cli, exported, tmp_path, function, needles):
    source = tmp_path / "feeds.py"
    source.write_text(FUNCTIONS)
    refused(cli, exported, tmp_path, f"{source}:{function}", f"calibration function {source}:{function}", *needles)


def test_a_corrupt_calibration_cache_is_named_and_rebuilt(cli, exported, tmp_path, monkeypatch, caplog):
    """Garbage, a cache of the wrong shape and ranges of another model: each named in a warning, set aside and
    calibrated again; the build succeeds, the cache is valid afterwards and later builds use it silently."""
    monkeypatch.setenv("EDGE_COMPRESS_CACHE", str(tmp_path / "cache"))
    folder = good_samples(tmp_path / "calibration")
    model, out = exported["tiny_convnet"].path, tmp_path / "out"
    assert build_int8(cli, model, folder, out).code == 0
    caches = list((tmp_path / "cache" / "calibration").glob("*.json"))
    assert len(caches) == 1
    good = caches[0].read_text()
    corruptions = {
        "garbage": "\x00{not json",
        "wrong shape": json.dumps({"CLS": "TensorsData", "data": [1, 2]}),
        "nan ranges": good.replace('"highest": {"data": [', '"highest": {"data": [NaN, '),
        "other model": json.dumps({"CLS": "TensorsData", "calibration_method": {"CLS": "CalibrationMethod",
                                                                              "value": "CalibrationMethod.MinMax"},
                                   "data": {"nowhere": {"lowest": {"CLS": "numpy.array", "data": [0.0],
                                                                   "dtype": "float32"},
                                                        "highest": {"CLS": "numpy.array", "data": [1.0],
                                                                    "dtype": "float32"}, "CLS": "TensorData"}}}),
    }
    for what, text in corruptions.items():
        caches[0].write_text(text)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            result = build_int8(cli, model, folder, out)
        assert result.code == 0, (what, result.err)
        assert any(str(caches[0]) in r.getMessage() and "calibration cache" in r.getMessage()
                   for r in caplog.records), (what, caplog.text)
        assert json.loads(caches[0].read_text())["data"], what
        assert_no_partial_files(tmp_path)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert build_int8(cli, model, folder, out).code == 0
    assert "calibration cache" not in caplog.text
    assert cli("compare", "tiny_convnet", out / "tiny_convnet_int8.onnx").code == 0
