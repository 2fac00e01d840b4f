"""Quantization-aware fine-tuning: its fake quantizer matches the Q/DQ exporter and NNCF, and it lowers INT8 error."""
import copy

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from compressor.core.tensor_spec import TensorSpec
from compressor.distill.int8.fake_quant import fake_quantized
from compressor.distill.int8.qat import (
    QatMirror,
    QatOptions,
    quantization_aware_finetune,
)
from compressor.distill.int8.ranges import NNCF_MEAN_MIN_MAX, activation_ranges
from compressor.targets.graph_rewrites import concat_conv_parts
from compressor.targets.onnx import export_onnx
from compressor.targets.quantize import Int8Options, quantize_qdq

SPEC = TensorSpec.parse("x:Nx3x16x16:float32:0..1")


class SmallSR(nn.Module):
    """Three convs with SiLU and a 1x1 conv over a concat of parts with different ranges (SPAN-like)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.head = nn.Conv2d(3, 8, 3, padding=1)
        self.body = nn.Conv2d(8, 8, 3, padding=1)
        self.cat = nn.Conv2d(16, 3, 1)
        with torch.no_grad():
            self.head.weight *= 20.0

    def forward(self, x):
        h = self.head(x)
        b = nn.functional.silu(self.body(h))
        return self.cat(torch.cat([h, b], dim=1))


def _ort(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def _error(got, ref):
    return float(np.abs(got - ref).mean() / np.abs(ref).mean())


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("qat")
    model = SmallSR().eval()
    onnx_path = export_onnx(model, [SPEC], ["y"], folder / "fp32.onnx").path
    groups = {k.removesuffix(".weight"): v for k, v in concat_conv_parts(onnx.load(str(onnx_path))).items()}
    rng = np.random.default_rng(0)
    feeds = [{"x": rng.random((1, 3, 16, 16), dtype=np.float32)} for _ in range(16)]
    held_out = rng.random((4, 3, 16, 16), dtype=np.float32)
    return folder, model, onnx_path, groups, feeds, held_out


def test_fake_quantizer_matches_the_qdq_exporter(setup):
    folder, model, onnx_path, groups, feeds, x = setup
    assert groups == {"cat": [8, 8]}
    qdq = quantize_qdq(onnx_path, folder / "ptq.onnx", feeds, Int8Options(use_cache=False))
    probe = copy.deepcopy(model)
    with fake_quantized(probe, activation_ranges(probe, feeds, ["x"], groups), groups), torch.no_grad():
        simulated = probe(torch.from_numpy(x)).numpy()
    assert not any(parametrize.is_parametrized(m) for m in probe.modules())
    reference = model(torch.from_numpy(x)).detach().numpy()
    exported = _ort(qdq, x)
    assert _error(simulated, exported) < 0.1 * _error(exported, reference)  # same quantizer, rounding aside


def test_finetuning_lowers_int8_error_and_leaves_the_model_alone(setup):
    folder, model, onnx_path, groups, feeds, x = setup
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = quantization_aware_finetune(model, feeds, ["x"], QatOptions(iterations=80, lr=1e-3, batch=4),
                                         QatMirror(input_groups=groups))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert result.relative_l1_after < result.relative_l1_before
    tuned = result.model
    reference = model(torch.from_numpy(x)).detach().numpy()
    ptq = quantize_qdq(onnx_path, folder / "ptq2.onnx", feeds, Int8Options(use_cache=False))
    tuned_onnx = export_onnx(tuned, [SPEC], ["y"], folder / "tuned.onnx").path
    qat = quantize_qdq(tuned_onnx, folder / "qat.onnx", feeds, Int8Options(use_cache=False))
    assert _error(_ort(qat, x), reference) < 0.95 * _error(_ort(ptq, x), reference)


def test_float_anchor_keeps_the_unquantized_model_near_fp32(setup):
    _, model, _, groups, feeds, x = setup
    reference = model(torch.from_numpy(x)).detach().numpy()
    drift = {}
    for anchor in (0.0, 1.0):
        tuned = quantization_aware_finetune(model, feeds, ["x"], QatOptions(iterations=60, lr=3e-3, batch=4,
                                                                          float_anchor=anchor),
                                            QatMirror(input_groups=groups)).model
        drift[anchor] = _error(tuned(torch.from_numpy(x)).detach().numpy(), reference)
    assert drift[1.0] < 0.5 * drift[0.0]


def _nncf_openvino(onnx_path, feeds, ranges_from=None, **advanced):
    import openvino as ov

    from compressor.targets.openvino.nncf import quantize_nncf

    model = quantize_nncf(onnx_path, feeds, Int8Options(use_cache=False, extra=advanced, ranges_from=ranges_from))
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return model, lambda x: np.array(compiled.create_infer_request().infer({0: x})[compiled.outputs[0]])


def _half_range_layers(onnx_path) -> list[str]:
    """The layers NNCF quantizes with half the weight range on this CPU (none where it has VNNI)."""
    from compressor.targets.openvino.nncf import nncf_half_range_weights

    return [name.removesuffix(".weight") for name in nncf_half_range_weights(onnx_path)]


def test_openvino_scheme_simulates_nncf_on_openvino(setup):
    """Asymmetric inputs only, NNCF's ranges, NNCF's weight range: the numbers OpenVINO computes from NNCF's
    model (bias correction off: it changes biases, which training leaves to NNCF)."""
    from compressor.targets.openvino.nncf import first_conv_weights

    _, model, onnx_path, groups, feeds, x = setup
    assert first_conv_weights(onnx_path) == ["head.weight"]
    half = _half_range_layers(onnx_path)
    _, deployed = _nncf_openvino(onnx_path, feeds, disable_bias_correction=True)
    probe = copy.deepcopy(model)
    ranges = activation_ranges(probe, feeds, ["x"], groups, NNCF_MEAN_MIN_MAX)
    with fake_quantized(probe, ranges, groups, half_range=half), torch.no_grad():
        simulated = probe(torch.from_numpy(x)).numpy()
    reference = model(torch.from_numpy(x)).detach().numpy()
    assert _error(deployed(x), reference) > 1e-3  # quantization is visible ...
    # ... and simulated: exactly with the full weight range; with NNCF's half-range first layer, OpenVINO's
    # arithmetic is not reproduced exactly (stored weights match but for rounding ties)
    assert _error(simulated, deployed(x)) < (1e-4 if not half else 0.5 * _error(deployed(x), reference))


def test_openvino_scheme_uses_nncfs_activation_ranges(setup):
    """The "openvino" scheme quantizes what NNCF quantizes for OpenVINO (conv inputs, asymmetric) with the
    ranges NNCF computes from the same feeds."""
    _, model, onnx_path, groups, feeds, _ = setup
    nncf_model, _ = _nncf_openvino(onnx_path, feeds)
    deployed = sorted((float(fq.input_value(1).get_node().get_data().item()),
                       float(fq.input_value(2).get_node().get_data().item()))
                      for fq in nncf_model.get_ops() if fq.get_type_name() == "FakeQuantize"
                      and fq.input_value(1).get_node().get_data().size == 1)  # activations (weights: per channel)
    ranges = activation_ranges(model, feeds, ["x"], groups, NNCF_MEAN_MIN_MAX)
    assert all(r is None for layer in ranges.values() for r in layer.outputs)  # outputs stay float
    assert all(not r.symmetric for layer in ranges.values() for r in layer.inputs)
    simulated = sorted({(r.low, r.high) for layer in ranges.values() for r in layer.inputs})
    np.testing.assert_allclose(simulated, deployed, rtol=1e-5, atol=1e-6)


def test_openvino_scheme_finetuning_lowers_nncf_int8_error(setup):
    folder, model, onnx_path, groups, feeds, x = setup
    reference = model(torch.from_numpy(x)).detach().numpy()
    _, ptq = _nncf_openvino(onnx_path, feeds)
    tuned = quantization_aware_finetune(model, feeds, ["x"], QatOptions(iterations=200, lr=1e-3, batch=4),
                                        QatMirror(NNCF_MEAN_MIN_MAX, groups,
                                                  half_range=tuple(_half_range_layers(onnx_path)))).model
    # bias correction off after QAT (training already compensated; NNCF's correction would undo some of it)
    _, qat = _nncf_openvino(export_onnx(tuned, [SPEC], ["y"], folder / "tuned_ov.onnx").path, feeds,
                            disable_bias_correction=True)
    assert _error(qat(x), reference) < 0.95 * _error(ptq(x), reference)


def test_nncf_deploys_the_ranges_qat_trained_for(setup):
    """QAT keeps the ranges fixed (NNCF's for the FP32 model) while the weights adapt: NNCF given those ranges
    (``ranges_from`` the FP32 model) computes exactly the simulated model; its own re-estimate does not."""
    from compressor.targets.openvino.nncf import activation_ranges_nncf

    folder, model, onnx_path, groups, feeds, x = setup
    half = _half_range_layers(onnx_path)
    tuned = quantization_aware_finetune(model, feeds, ["x"], QatOptions(iterations=150, lr=3e-3, batch=4),
                                        QatMirror(NNCF_MEAN_MIN_MAX, groups, half_range=tuple(half))).model
    probe = copy.deepcopy(tuned)
    with fake_quantized(probe, activation_ranges(model, feeds, ["x"], groups, NNCF_MEAN_MIN_MAX), groups,
                        half_range=half), torch.no_grad():
        simulated = probe(torch.from_numpy(x)).numpy()
    fp32_model, _ = _nncf_openvino(onnx_path, feeds)
    trained = activation_ranges_nncf(fp32_model)
    assert len(trained) == 3  # x; h (body and the first concat part share it); the second part
    tuned_onnx = export_onnx(tuned, [SPEC], ["y"], folder / "tuned_ranges.onnx").path
    given_model, given = _nncf_openvino(tuned_onnx, feeds, str(onnx_path), disable_bias_correction=True)
    own_model, own = _nncf_openvino(tuned_onnx, feeds, disable_bias_correction=True)
    assert activation_ranges_nncf(given_model) == trained != activation_ranges_nncf(own_model)
    assert _error(given(x), simulated) < (1e-4 if not half else 0.5 * _error(own(x), simulated))
    assert _error(own(x), simulated) > 10 * _error(given(x), simulated)


def test_qdq_deploys_the_ranges_qat_trained_for(setup):
    """The same for the Q/DQ exporter: ONNX Runtime quantizes the fine-tuned model with the FP32 model's
    calibrated ranges (the ones the ``qdq`` scheme trained with)."""
    from compressor.distill.int8.ranges import ranges_from_exporter
    from compressor.targets.quantize import qdq_layer_scales

    folder, model, onnx_path, groups, feeds, x = setup
    tuned = quantization_aware_finetune(model, feeds, ["x"], QatOptions(iterations=150, lr=3e-3, batch=4),
                                        QatMirror(input_groups=groups)).model
    fp32_qdq = quantize_qdq(onnx_path, folder / "fp32_qdq.onnx", feeds, Int8Options(use_cache=False))
    tuned_onnx = export_onnx(tuned, [SPEC], ["y"], folder / "tuned_qdq.onnx").path
    given = quantize_qdq(tuned_onnx, folder / "given.onnx", feeds,
                         Int8Options(use_cache=False, ranges_from=str(onnx_path)))
    own = quantize_qdq(tuned_onnx, folder / "own.onnx", feeds, Int8Options(use_cache=False))

    assert qdq_layer_scales(given) == qdq_layer_scales(fp32_qdq) != qdq_layer_scales(own)
    ranges = ranges_from_exporter(qdq_layer_scales(fp32_qdq), activation_ranges(model, feeds, ["x"], groups), groups)
    probe = copy.deepcopy(tuned)
    with fake_quantized(probe, ranges, groups), torch.no_grad():
        simulated = probe(torch.from_numpy(x)).numpy()
    assert _error(_ort(given, x), simulated) < 0.5 * _error(_ort(own, x), simulated)


def test_ranges_naming_no_quantizer_are_refused(setup):
    from compressor.core.errors import BuildError
    from compressor.targets.openvino.nncf import set_activation_ranges

    _, _, onnx_path, _, feeds, _ = setup
    quantized, _ = _nncf_openvino(onnx_path, feeds)
    with pytest.raises(BuildError, match="none of the 1 activation ranges names a quantizer"):
        set_activation_ranges(quantized, {"nope/fq_output_0": (0.0, 1.0)})


def test_trained_ranges_with_every_layer_kept_in_float_quantize_nothing(setup):
    """The gate may keep every layer in float: the trained ranges then have no quantizer to go to."""
    from compressor.targets.openvino.nncf import activation_ranges_nncf, quantize_nncf
    from compressor.targets.quantize import quantizable_nodes

    _, _, onnx_path, _, feeds, x = setup
    model = quantize_nncf(onnx_path, feeds, Int8Options(use_cache=False, ranges_from=str(onnx_path),
                                                       exclude=tuple(quantizable_nodes(onnx_path))))
    assert activation_ranges_nncf(model) == {}
    assert not [op for op in model.get_ops() if op.get_type_name() == "FakeQuantize"]


def test_unknown_scheme_is_refused():
    from compressor.core.errors import UnknownNameError
    from compressor.distill.int8.schemes import qat_scheme

    with pytest.raises(UnknownNameError, match="unknown QAT scheme 'tensorrt'"):
        qat_scheme("tensorrt")


def test_exporter_scales_go_with_symmetric_activations_only():
    with pytest.raises(ValueError, match="symmetric activations only"):
        QatMirror(NNCF_MEAN_MIN_MAX, exporter_scales={"head.weight": {"input": 0.1}})
