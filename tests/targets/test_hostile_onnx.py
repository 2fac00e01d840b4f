"""ONNX files that lie about their external data, ``--keep-float`` of a node that is not there, and a disk that
fills while OpenVINO saves: one line on stderr, exit 2, nothing changed outside the output folder, nothing
half-written left."""
from __future__ import annotations

import errno

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests.support import (
    assert_no_partial_files,
    assert_one_line_error,
    assert_untouched_outside,
    tree_state,
)


def external_model(folder, location: str, dims: list[int], *, data: bytes | None = None, name="m.onnx"):
    """``y = x + w`` with ``w`` (float32 of ``dims``) declared in external data at ``location``; ``data`` is
    written to ``folder/location`` when given (the file may be shorter than declared)."""
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=dims, data_location=TensorProto.EXTERNAL)
    for key, value in (("location", location), ("offset", "0")):
        weight.external_data.add(key=key, value=value)
    size = dims[-1] if dims[-1] < 1 << 20 else 4
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"], name="add")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [size])], initializer=[weight])
    path = folder / name
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    if data is not None:
        (folder / location).write_bytes(data)
    return path


@pytest.fixture
def place(tmp_path):
    """``(model folder, output folder, state of tmp_path before)``; a secret file sits beside the model folder."""
    (tmp_path / "model").mkdir()
    (tmp_path / "secret.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    return tmp_path / "model", tmp_path / "out", tmp_path


@pytest.mark.parametrize("case", ["outside", "absolute", "huge", "absurd", "truncated", "missing"])
def test_lying_external_data_is_refused_before_loading(cli, place, case):
    folder, out, root = place
    four = np.ones(4, np.float32).tobytes()
    model, needle = {
        "outside": (lambda: external_model(folder, "../secret.bin", [4]), "outside the model's folder"),
        "absolute": (lambda: external_model(folder, str(root / "secret.bin"), [4]), "outside the model's folder"),
        "huge": (lambda: external_model(folder, "w.bin", [50 * 1024**3 // 4], data=four), "50.0 GiB"),
        "absurd": (lambda: external_model(folder, "w.bin", [2**40, 2**20], data=four), "GiB limit"),
        "truncated": (lambda: external_model(folder, "w.bin", [8], data=four), "holds 16 bytes"),
        "missing": (lambda: external_model(folder, "gone.bin", [4]), "does not exist"),
    }[case]
    model = model()
    honest_folder = root / "honest"
    honest_folder.mkdir()
    honest = external_model(honest_folder, "w.bin", [4], data=four)
    assert cli("build", honest, "--target", "onnxruntime", "--out", honest_folder).code == 0
    before = tree_state(root)
    for target in ("onnxruntime", "openvino"):
        result = cli("build", model, "--target", target, "--precision", "fp32", "--out", out)
        assert_one_line_error(result, needle, "tensor 'w'")
    assert_one_line_error(cli("compare", model, honest_folder / "m_fp32.onnx"), needle)  # as the reference
    assert_untouched_outside(root, before, out)
    assert not out.exists() or not list(out.iterdir())


def test_honest_external_data_builds_one_self_contained_file(cli, place):
    folder, out, root = place
    model = external_model(folder, "w.bin", [4], data=np.arange(4, dtype=np.float32).tobytes())
    assert cli("build", model, "--target", "onnxruntime", "--precision", "fp32", "--out", out).code == 0
    built = onnx.load(str(out / "m_fp32.onnx"), load_external_data=False)
    assert not any(t.data_location == TensorProto.EXTERNAL for t in built.graph.initializer)
    assert sorted(p.name for p in out.iterdir()) == ["m_fp32.onnx", "m_fp32.onnx.artifact.json"]
    assert cli("compare", model, out / "m_fp32.onnx").code == 0


@pytest.mark.parametrize("quantizer", ["qdq", "nncf"])
def test_keep_float_of_a_node_that_does_not_exist_is_refused(cli, exported, tmp_path, quantizer):
    model = exported["tiny_convnet"].path
    convs = [n.name for n in onnx.load(str(model)).graph.node if n.op_type == "Conv"]
    calibration = tmp_path / "calibration"
    calibration.mkdir()
    for index in range(2):
        np.save(calibration / f"{index}.npy", np.random.default_rng(index).random((3, 32, 32), dtype=np.float32))
    before = tree_state(tmp_path)
    out = tmp_path / "out"
    result = cli("build", model, "--target", "openvino", "--precision", "int8", "--calibration", calibration,
                 "--quantizer", quantizer, "--keep-float", convs[0], "--keep-float", convs[0] + "x", "--out", out)
    assert_one_line_error(result, f"node '{convs[0]}x'", f"did you mean '{convs[0]}'")
    assert_untouched_outside(tmp_path, before, out)
    assert not list(out.glob("*.xml")) and not list(out.glob("*.json"))
    assert_no_partial_files(out)
    ok = cli("build", model, "--target", "onnxruntime", "--precision", "int8", "--calibration", calibration,
             "--keep-float", convs[0], "--out", out)
    assert ok.code == 0, ok.err


def test_a_full_disk_while_openvino_saves_names_the_destination(cli, exported, tmp_path, monkeypatch):
    import openvino as ov

    real_save = ov.save_model

    def save_until_the_disk_is_full(model, path, *args, **kwargs):
        real_save(model, path, *args, **kwargs)  # the weights are written, then the disk fills
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(ov, "save_model", save_until_the_disk_is_full)
    before = tree_state(tmp_path)
    out = tmp_path / "out"
    result = cli("build", exported["tiny_convnet"].path, "--target", "openvino", "--precision", "fp32", "--out", out)
    assert_one_line_error(result, f"{out / 'tiny_convnet_fp32.xml'}", "No space left on device")
    assert ".tmp" not in result.err
    assert list(out.iterdir()) == []
    assert_untouched_outside(tmp_path, before, out)


def test_export_of_a_model_that_outputs_nan_names_it(cli, tmp_path):
    """sqrt(x - 2) on inputs in [0, 1] is NaN in PyTorch and ONNX alike: named as non-finite, not 'max abs 0'."""
    source = tmp_path / "nan_model.py"
    source.write_text("import torch\n\nclass Root(torch.nn.Module):\n    def forward(self, x):\n"
                      "        return torch.sqrt(x - 2)\n\ndef make():\n    return Root()\n")
    before = tree_state(tmp_path)
    out = tmp_path / "out"
    result = cli("export", f"{source}:make", "--input", "x:1x8:float32:0..1", "--out", out)
    assert_one_line_error(result, "non-finite", "in PyTorch", "in ONNX")
    assert "max abs 0" not in result.err
    assert_untouched_outside(tmp_path, before, out)
    assert not list(out.glob("*.onnx"))
