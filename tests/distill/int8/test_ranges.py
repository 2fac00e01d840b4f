"""Activation ranges as one typed value, their calibration, and fake quantization with an explicit switch."""
import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from compressor.distill.int8.fake_quant import (
    fake_quant_activation,
    fake_quant_layer_input,
    fake_quantized,
)
from compressor.distill.int8.ranges import (
    NNCF_MEAN_MIN_MAX,
    SYMMETRIC_ABSMAX,
    ActivationRange,
    LayerRanges,
    activation_ranges,
    ranges_from_exporter,
)
from compressor.models import create_model


def test_symmetric_and_asymmetric_ranges_are_one_type():
    symmetric, asymmetric = ActivationRange.absmax(2.0), ActivationRange.between(-0.5, 3.0)
    assert (symmetric.low, symmetric.high, symmetric.symmetric) == (-2.0, 2.0, True)
    assert (asymmetric.low, asymmetric.high, asymmetric.symmetric) == (-0.5, 3.0, False)
    assert ActivationRange.absmax(0.0).is_zero and not ActivationRange.between(0.0, 0.0).is_zero
    with pytest.raises(ValueError, match="symmetric range is -absmax..absmax"):
        ActivationRange(-1.0, 2.0, symmetric=True)
    with pytest.raises(AttributeError):
        symmetric.high = 3.0  # frozen


def test_fake_quantization_of_each_kind_of_range():
    x = torch.linspace(-3, 3, 101)
    symmetric = fake_quant_activation(x, ActivationRange.absmax(2.0))
    assert torch.equal(symmetric, torch.fake_quantize_per_tensor_affine(x, 2.0 / 127, 0, -127, 127))
    asymmetric = fake_quant_activation(x, ActivationRange.between(-1.0, 2.0))
    assert float(asymmetric.min()) == -1.0 and float(asymmetric.max()) == pytest.approx(2.0)
    assert len(torch.unique(asymmetric)) <= 256
    assert fake_quant_activation(x, None) is x
    assert fake_quant_layer_input(x, ActivationRange.absmax(0.0)) is x  # never seen non-zero: stays float
    assert fake_quant_layer_input(x, None) is x


def test_calibration_gives_each_layer_typed_ranges():
    model = create_model("tiny_convnet")
    rng = np.random.default_rng(0)
    feeds = [{"image": rng.random((1, 3, 16, 16), dtype=np.float32)} for _ in range(3)]
    qdq = activation_ranges(model, feeds, ["image"])
    nncf = activation_ranges(model, feeds, ["image"], estimator=NNCF_MEAN_MIN_MAX)
    assert qdq.keys() == nncf.keys() and len(qdq) == 5
    for name, layer in qdq.items():
        assert isinstance(layer, LayerRanges) and len(layer.inputs) == len(layer.outputs) == 1
        assert layer.inputs[0].symmetric and layer.outputs[0].symmetric and layer.outputs[0].high > 0
        (low, high), = [(r.low, r.high) for r in nncf[name].inputs]
        assert not nncf[name].inputs[0].symmetric and low <= 0.0 <= high and nncf[name].outputs == (None,)
    first = next(iter(qdq.values()))
    assert first.inputs[0].high == pytest.approx(max(float(f["image"].max()) for f in feeds))


def test_exporter_scales_replace_min_max_where_given():
    fallback = {"conv": LayerRanges((ActivationRange.absmax(1.0),), (ActivationRange.absmax(2.0),)),
                "cat": LayerRanges((ActivationRange.absmax(1.0), ActivationRange.absmax(3.0)),
                                   (ActivationRange.absmax(4.0), ActivationRange.absmax(5.0)))}
    scales = {"conv.weight": {"output": 0.5}, "cat.weight_part1": {"input": 0.25, "output": 0.125}}
    ranges = ranges_from_exporter(scales, fallback, {"cat": [2, 2]})
    assert ranges["conv"] == LayerRanges((ActivationRange.absmax(1.0),), (ActivationRange.absmax(63.5),))
    assert ranges["cat"] == LayerRanges((ActivationRange.absmax(1.0), ActivationRange.absmax(31.75)),
                                        (ActivationRange.absmax(4.0), ActivationRange.absmax(15.875)))


def test_the_switch_turns_the_blocks_quantizers_off_and_no_global_state_remains():
    model = create_model("tiny_convnet")
    x = torch.rand(2, 3, 16, 16)
    feeds = [{"image": x[:1].numpy()}, {"image": x[1:].numpy()}]
    ranges = activation_ranges(model, feeds, ["image"], estimator=SYMMETRIC_ABSMAX)
    with torch.no_grad():
        plain = model(x)
        with fake_quantized(model, ranges) as quantizers:
            quantized = model(x)
            with quantizers.off():
                floated = model(x)
            again = model(x)
            with fake_quantized(nn.Sequential(), {}) as other:  # another block's switch is its own
                with other.off():
                    assert torch.equal(model(x), quantized)
    assert torch.equal(floated, plain) and torch.equal(again, quantized) and not torch.equal(quantized, plain)
    assert not any(parametrize.is_parametrized(m) for m in model.modules())
    assert torch.equal(model(x).detach(), plain)
