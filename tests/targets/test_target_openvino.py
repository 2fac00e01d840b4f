import pytest

from compressor.targets.table import load_target
from tests.targets.contract import TargetContract


class TestOpenVinoFP32(TargetContract):
    target, precision, package = "openvino", "fp32", "openvino"

    def test_compiled_in_f32_not_the_cpu_default(self, built):
        with load_target("openvino").load_runner(built["tiny_convnet"]) as runner:
            hint = runner.backend.compiled.get_property("INFERENCE_PRECISION_HINT")
        assert hint.to_string() == "f32"


class TestOpenVinoFP16(TargetContract):
    target, precision, package = "openvino", "fp16", "openvino"

    def test_weights_are_compressed(self, built, exported):
        fp16_bin = built["tiny_pair_transformer"].folder / built["tiny_pair_transformer"].files[1]
        assert built["tiny_pair_transformer"].metadata["weights"] == "fp16"
        onnx_size = exported["tiny_pair_transformer"].path.stat().st_size
        assert fp16_bin.stat().st_size < 0.7 * onnx_size


class TestOpenVinoINT8QDQ(TargetContract):
    target, precision, package = "openvino", "int8", "openvino"


class TestOpenVinoINT8NNCF(TargetContract):
    target, precision, package = "openvino", "int8", "nncf"
    options = {"quantizer": "nncf"}


class TestOpenVinoBF16(TargetContract):
    target, precision, package = "openvino", "bf16", "openvino"

    @pytest.fixture(autouse=True)
    def _needs_bf16(self):
        from compressor.targets.openvino import cpu_supports_bf16

        if not cpu_supports_bf16():
            pytest.skip("this CPU has no bf16 support in OpenVINO")


def test_int8_without_calibration_is_refused(exported, tmp_path):
    from compressor.core.errors import UnsupportedPrecisionError

    with pytest.raises(UnsupportedPrecisionError, match="needs calibration data"):
        load_target("openvino").build(exported["tiny_convnet"].path, precision="int8", out_dir=tmp_path)


def test_nncf_keeps_exactly_the_named_layers_in_float(exported):
    """Excluding one conv must not exclude others whose names start with its name (conv2d vs conv2d_1)."""
    import collections

    import numpy as np
    import onnx

    from compressor.targets.openvino.nncf import quantize_nncf
    from compressor.targets.quantize import Int8Options

    path = exported["tiny_convnet"].path
    convs = [n.name for n in onnx.load(str(path)).graph.node if n.op_type == "Conv"]
    first = min(convs, key=len)
    assert any(name != first and name.startswith(first) for name in convs)  # the case that matters
    spec = exported["tiny_convnet"].inputs[0]
    rng = np.random.default_rng(0)
    feeds = [{spec.name: rng.random(spec.concrete_shape(1), dtype=np.float32)} for _ in range(4)]

    def fake_quantize_ops(exclude):
        model = quantize_nncf(path, feeds, Int8Options(exclude=exclude))
        return collections.Counter(op.get_type_name() for op in model.get_ops())["FakeQuantize"]

    everything, without_first = fake_quantize_ops(()), fake_quantize_ops((first,))
    assert 0 < without_first < everything


def test_static_shapes_compile_per_shape_and_match_the_dynamic_model(exported, tmp_path, monkeypatch):
    """``static_shapes`` runs each input shape on its own static compilation (most recent kept) with the
    same outputs as the dynamic-shape model."""
    import numpy as np

    import compressor.runtime.backends as runtime

    monkeypatch.setattr(runtime, "STATIC_SHAPE_CACHE", 2)
    dynamic = load_target("openvino").build(exported["tiny_convnet"].path, precision="fp32", out_dir=tmp_path,
                                            name="dynamic")
    static = load_target("openvino").build(exported["tiny_convnet"].path, precision="fp32", out_dir=tmp_path,
                                           name="static", options={"static_shapes": True})
    assert static.options["static_shapes"] is True
    rng = np.random.default_rng(0)
    feeds = [{"image": rng.random(shape, dtype=np.float32)} for shape in
             [(1, 3, 32, 32), (2, 3, 40, 24), (1, 3, 32, 32), (1, 3, 16, 16)]]
    with load_target("openvino").load_runner(dynamic) as d, load_target("openvino").load_runner(static) as s:
        for feed in feeds:
            want, got = d.infer(feed), s.infer(feed)
            for name in want:
                np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-5)
        cached = [dict(key)["image"] for key in s.backend._by_shape]
        assert s.backend.compiled is None  # no dynamic compilation when shapes are static
        for compiled, _ in s.backend._by_shape.values():
            assert not compiled.inputs[0].get_partial_shape().is_dynamic
    assert cached == [(1, 3, 32, 32), (1, 3, 16, 16)]  # the least recently used shape was dropped


def test_int8_float_layers_in_bf16(exported, tmp_path):
    """``float_layers: bf16``: the layers kept out of INT8 compute in bf16 (read back from the compiled model);
    the outputs stay within INT8 parity of the same INT8 model with f32 float layers, but are not identical."""
    import numpy as np
    import onnx

    from compressor.targets.openvino import cpu_supports_bf16
    from compressor.targets.quantize import Int8Options

    if not cpu_supports_bf16():
        pytest.skip("this CPU has no bf16 support in OpenVINO")
    path = exported["tiny_convnet"].path
    spec = exported["tiny_convnet"].inputs[0]
    rng = np.random.default_rng(0)
    feeds = [{spec.name: rng.random(spec.concrete_shape(1), dtype=np.float32)} for _ in range(4)]
    keep = tuple(n.name for n in onnx.load(str(path)).graph.node if n.op_type == "Conv")[:1]
    artifacts = {layers: load_target("openvino").build(
        path, precision="int8", out_dir=tmp_path, name=f"int8_{layers}", calibration=feeds,
        int8=Int8Options(exclude=keep), options={"quantizer": "nncf", "float_layers": layers})
        for layers in ("fp32", "bf16")}
    options = artifacts["bf16"].options
    assert options["float_layers"] == "bf16" and options["inference_precision"] == "bf16"
    outputs = {}
    for layers, artifact in artifacts.items():
        with load_target("openvino").load_runner(artifact) as runner:
            hint = runner.backend.compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
            assert hint == {"fp32": "f32", "bf16": "bf16"}[layers]
            outputs[layers] = next(iter(runner.infer(feeds[0]).values()))
    scale = float(np.abs(outputs["fp32"]).max())
    difference = float(np.abs(outputs["bf16"] - outputs["fp32"]).max())
    assert 0 < difference < 0.05 * scale


def test_options_are_checked_before_building(exported, tmp_path):
    """Bad options fail before any conversion: float layers of a non-int8 artifact, a bad choice, another
    target's option; typed options and mappings build the same sidecar keys."""
    from compressor.core.feeds import random_feeds
    from compressor.targets.openvino import OpenVinoOptions
    from compressor.targets.options import TargetOptionError

    path = exported["tiny_convnet"].path
    feeds = random_feeds(exported["tiny_convnet"].inputs, count=2)
    target = load_target("openvino")
    with pytest.raises(TargetOptionError, match="'float_layers' of target openvino: bf16 applies to int8 artifacts"):
        target.build(path, precision="fp32", out_dir=tmp_path, options={"float_layers": "bf16"})
    with pytest.raises(TargetOptionError, match="'int4' is not one of fp32, bf16"):
        target.build(path, precision="int8", out_dir=tmp_path, calibration=feeds, options={"float_layers": "int4"})
    with pytest.raises(TargetOptionError, match="option 'provider' does not apply to target openvino"):
        target.build(path, precision="fp32", out_dir=tmp_path, options={"provider": "cpu"})
    assert not list(tmp_path.iterdir())
    typed = target.build(path, precision="fp32", out_dir=tmp_path, name="typed",
                         options=OpenVinoOptions(static_shapes=True))
    mapped = target.build(path, precision="fp32", out_dir=tmp_path, name="mapped", options={"static_shapes": True})
    assert typed.options == mapped.options == {"device": "CPU", "inference_precision": "f32", "static_shapes": True}
