"""ONNX files written by older tools (Model Zoo style: IR 3, opset 9, initializers listed as inputs, names with
``/``, Reshape from a shape initializer) build at every precision on both CPU runtimes through the CLI and
pass ``compress compare`` against the original file (INT8 on its default, SQNR >= 20 dB on task-like data)."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import onnx
import pytest

from compressor.targets.base import Artifact
from compressor.targets.onnx_normalize import (
    TARGET_OPSET,
    needs_normalizing,
    normalize_model,
    normalized_onnx,
)
from compressor.targets.table import open_runner
from tests.support import assert_no_partial_files, assert_untouched_outside, tree_state
from tests.targets.zoo_style import ZOO_MODELS, task_like_samples

BUILDS = [("onnxruntime", "fp32", None), ("onnxruntime", "fp16", None), ("onnxruntime", "int8", None),
          ("openvino", "fp32", None), ("openvino", "fp16", None), ("openvino", "int8", "qdq"),
          ("openvino", "int8", "nncf")]
INPUT = {"zoo_convnet": "data/0", "zoo_reshape_mlp": "input/features"}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """``{name: (model path, calibration folder, compare inputs .npz)}`` for each old-style graph."""
    made = {}
    for name, write in ZOO_MODELS.items():
        folder = tmp_path_factory.mktemp(name)
        model = write(folder / f"{name}.onnx")
        calibration = folder / "calibration"
        calibration.mkdir()
        for index, sample in enumerate(task_like_samples(name, 16, seed=0)):
            np.save(calibration / f"{index:02d}.npy", sample)
        inputs = folder / "inputs.npz"
        np.savez(inputs, **{INPUT[name]: np.stack(task_like_samples(name, 8, seed=1))})
        made[name] = (model, calibration, inputs)
    return made


def test_the_graphs_are_old_style_and_normalize_keeping_names(zoo):
    for name, (path, _, _) in zoo.items():
        model = onnx.load(str(path))
        initializers = {i.name for i in model.graph.initializer}
        assert model.ir_version == 3 and model.opset_import[0].version == 9
        assert initializers <= {i.name for i in model.graph.input} and needs_normalizing(model)
        normal, done = normalize_model(model)
        assert [i.name for i in normal.graph.input] == [INPUT[name]]
        assert {n.name for n in normal.graph.node} >= {n.name for n in model.graph.node if n.op_type != "Dropout"}
        assert done.opset == (9, TARGET_OPSET) and normal.ir_version >= 8 and done.initializer_inputs
        assert not needs_normalizing(normal)
        onnx.checker.check_model(normal, full_check=True)


def test_a_current_graph_is_used_as_it_is(exported, tmp_path):
    path = exported["tiny_convnet"].path
    assert normalized_onnx(path, tmp_path) == (path, None)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("target,precision,quantizer", BUILDS, ids=["-".join(filter(None, b)) for b in BUILDS])
@pytest.mark.parametrize("name", list(ZOO_MODELS))
def test_builds_and_compares_with_its_fp32_reference(cli, zoo, tmp_path, name, target, precision, quantizer):
    if quantizer == "nncf" and importlib.util.find_spec("nncf") is None:
        pytest.skip("nncf is not installed")
    model, calibration, inputs = zoo[name]
    before = tree_state(model.parent)
    out = tmp_path / "out"
    args = ["build", model, "--target", target, "--precision", precision, "--out", out]
    args += ["--calibration", calibration] if precision == "int8" else []
    args += ["--quantizer", quantizer] if quantizer else []
    built = cli(*args)
    assert built.code == 0, built.err
    artifact = next(out.glob("*.artifact.json"))
    sidecar = json.loads(artifact.read_text())
    assert [s["name"] for s in sidecar["inputs"]] == [INPUT[name]]  # the shape initializers are no inputs
    assert sidecar["metadata"]["normalized"]["opset"] == [9, TARGET_OPSET]
    if target == "onnxruntime" and precision == "int8":
        ops = {n.op_type for n in onnx.load(str(out / sidecar["path"])).graph.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    compared = cli("compare", model, out / sidecar["path"], "--inputs", inputs)
    assert compared.code == 0, compared.out + compared.err
    assert compared.out.startswith("PASS") and ("SQNR >= 20 dB" in compared.out) == (precision == "int8")
    assert_untouched_outside(model.parent, before)
    assert_no_partial_files(out)


def test_int8_really_quantizes_the_old_style_graph(cli, zoo, tmp_path):
    """The INT8 engine differs from FP32 (it is not a float copy) while staying within parity."""
    model, calibration, inputs = zoo["zoo_convnet"]
    for precision in ("fp32", "int8"):
        assert cli("build", model, "--target", "openvino", "--precision", precision, "--calibration", calibration,
                   "--out", tmp_path).code == 0
    outputs = {}
    feed = {INPUT["zoo_convnet"]: task_like_samples("zoo_convnet", 1, seed=3)[0]}
    for precision in ("fp32", "int8"):
        with open_runner(Artifact.load(tmp_path / f"zoo_convnet_{precision}.xml")) as runner:
            outputs[precision] = next(iter(runner.infer(feed).values()))
    assert not np.allclose(outputs["fp32"], outputs["int8"], atol=1e-6)
    np.testing.assert_allclose(outputs["int8"], outputs["fp32"], atol=0.1 * np.abs(outputs["fp32"]).max())
