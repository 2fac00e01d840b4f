"""TensorRT: the build plan is tested everywhere; engines are built and checked where TensorRT and a GPU exist."""
import json

import pytest

from compressor.core.errors import UnsupportedPrecisionError
from compressor.core.tensor_spec import TensorSpec
from compressor.targets.tensorrt import make_plan, make_profiles, parse_version
from tests.targets.contract import TargetContract

SPECS = [TensorSpec.parse("image:Nx3xH=64xW=48:float32:0..1")]


class TestTensorRtFP32(TargetContract):
    target, precision, package = "tensorrt", "fp32", "tensorrt"


class TestTensorRtFP16(TargetContract):
    target, precision, package = "tensorrt", "fp16", "tensorrt"


class TestTensorRtINT8(TargetContract):
    target, precision, package = "tensorrt", "int8", "tensorrt"


def test_version_parsing():
    assert parse_version("10.3.0.26") == (10, 3) and parse_version("11.0.1") == (11, 0)
    with pytest.raises(ValueError):
        parse_version("ten")


def test_tensorrt_11_is_strongly_typed_from_the_graph():
    fp16 = make_plan(SPECS, "fp16", (11, 0))
    int8 = make_plan(SPECS, "int8", (11, 0))
    assert fp16.strongly_typed and fp16.onnx_kind == "fp16" and fp16.builder_flags == ()
    assert int8.strongly_typed and int8.onnx_kind == "qdq" and not int8.implicit_calibration
    assert "--fp16" not in fp16.trtexec_args("m.onnx", "m.engine")
    with pytest.raises(UnsupportedPrecisionError, match="removed implicit INT8 calibration"):
        make_plan(SPECS, "int8", (11, 0), implicit_calibration=True)


def test_tensorrt_10_uses_flags_qdq_or_implicit_calibration():
    fp16 = make_plan(SPECS, "fp16", (10, 3))
    assert not fp16.strongly_typed and fp16.builder_flags == ("FP16",) and fp16.onnx_kind == "fp32"
    assert "--fp16" in fp16.trtexec_args("m.onnx", "m.engine")
    explicit = make_plan(SPECS, "int8", (10, 3))
    assert explicit.onnx_kind == "qdq" and "INT8" in explicit.builder_flags
    implicit = make_plan(SPECS, "int8", (10, 3), implicit_calibration=True)
    assert implicit.implicit_calibration and implicit.onnx_kind == "fp32"
    assert "--calib=calibration.cache" in implicit.trtexec_args("m.onnx", "m.engine")
    with pytest.raises(UnsupportedPrecisionError, match="int4"):
        make_plan(SPECS, "int4", (10, 3))


def test_profiles_cover_batch_and_spatial_ranges():
    (profile,) = make_profiles(SPECS, max_batch=8)
    low, opt, high = profile.shapes["image"]
    assert low == (1, 3, 32, 24) and opt == (1, 3, 64, 48) and high == (8, 3, 128, 96)
    assert make_profiles([TensorSpec.parse("x:1x3x8x8")]) == ()
    args = make_plan(SPECS, "fp32", (10, 3)).trtexec_args("m.onnx", "m.engine")
    assert "--minShapes=image:1x3x32x24" in args and "--maxShapes=image:4x3x128x96" in args


def test_jetson_bundle_holds_onnx_and_device_steps(exported, tmp_path, cli):
    from compressor.core.feeds import random_feeds
    from compressor.targets.bundle import verify_bundle
    from compressor.targets.jetson import create_jetson_bundle

    onnx = exported["tiny_convnet"]
    bundle = create_jetson_bundle(onnx, tmp_path, precision="fp16")
    manifest = json.loads((bundle.folder / "manifest.json").read_text())
    assert manifest["jetson"]["build_command"][:2] == ["trtexec", "--onnx=model.onnx"]
    assert "--fp16" in manifest["jetson"]["build_command"] and not any(p.endswith(".engine") for p in manifest["files"])
    report = verify_bundle(bundle.archive)
    assert report["checksums"] == "ok" and report["selftest"] is None
    with pytest.raises(UnsupportedPrecisionError, match="calibration"):
        create_jetson_bundle(onnx, tmp_path, precision="int8", name="q")
    int8 = create_jetson_bundle(onnx, tmp_path, precision="int8", name="q",
                                calibration=random_feeds(onnx.inputs, count=4))
    import onnx as onnx_lib

    ops = {n.op_type for n in onnx_lib.load(str(int8.folder / "model.onnx")).graph.node}
    assert "QuantizeLinear" in ops


def test_trtexec_times_become_a_compress_profile(exported, tmp_path):
    import importlib.util
    import shutil

    from compressor.targets.jetson import create_jetson_bundle

    bundle = create_jetson_bundle(exported["tiny_convnet"], tmp_path, precision="fp16")
    spec = importlib.util.spec_from_file_location("jetson_step", bundle.folder / "jetson.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    records = [{"startHostMs": 10.0 * i, "endHostMs": 10.0 * i + 2.0, "latencyMs": 2.0 + 0.1 * (i % 3)}
               for i in range(50)]
    manifest = json.loads((bundle.folder / "manifest.json").read_text())
    result = module.profile_from_times(records, manifest, 3.0)
    assert result["latency_ms"]["min"] == pytest.approx(2.0) and result["latency_ms"]["max"] == pytest.approx(2.2)
    assert result["precision"] == "fp16" and result["protocol"]["runtime"] == "tensorrt"
    assert result["throughput_fps"] == pytest.approx(50 / 0.492)
    shutil.rmtree(bundle.folder)


def test_cli_jetson_bundle(cli, exported, tmp_path):
    result = cli("bundle", exported["tiny_convnet"].path, "--jetson", "--precision", "fp16", "--out", tmp_path,
                 "--name", "jet")
    assert result.code == 0, result.err
    assert "jetson.py build" in result.out and (tmp_path / "jet.tar.gz").exists()
    verified = cli("bundle", "verify", tmp_path / "jet.tar.gz")
    assert verified.code == 0 and "builds its engine on the device" in verified.out


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_old_style_onnx_is_normalized_before_tensorrt_parses_it(tmp_path, precision):
    import onnx

    from compressor.targets.tensorrt.target import _onnx_for_plan
    from tests.targets.zoo_style import zoo_convnet

    old = zoo_convnet(tmp_path / "zoo.onnx")
    plan = make_plan([TensorSpec("data/0", (1, 3, 32, 32), "float32")], precision, (11, 0))
    parsed = onnx.load(str(_onnx_for_plan(old, plan, tmp_path, None, None)))
    opset = next(o.version for o in parsed.opset_import if o.domain in ("", "ai.onnx"))
    listed = {i.name for i in parsed.graph.input} & {t.name for t in parsed.graph.initializer}
    assert opset >= 13 and parsed.ir_version > 3 and not listed
