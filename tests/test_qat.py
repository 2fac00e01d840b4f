"""Quantization-aware fine-tuning: its fake quantizer matches the Q/DQ exporter, and it lowers INT8 error."""
import copy

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from compressor.qat import QatOptions, activation_ranges, fake_quantized, quantization_aware_finetune
from targets.graph_rewrites import concat_conv_parts
from targets.onnx import export_onnx
from targets.quantize import Int8Options, quantize_qdq
from targets.tensor_spec import TensorSpec

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
    tuned, summary = quantization_aware_finetune(model, feeds, ["x"], QatOptions(iterations=80, lr=1e-3, batch=4),
                                                 input_groups=groups)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert summary["relative_l1_to_fp32_after"] < summary["relative_l1_to_fp32_before"]
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
        tuned, _ = quantization_aware_finetune(model, feeds, ["x"], QatOptions(iterations=60, lr=3e-3, batch=4,
                                                                             float_anchor=anchor),
                                               input_groups=groups)
        drift[anchor] = _error(tuned(torch.from_numpy(x)).detach().numpy(), reference)
    assert drift[1.0] < 0.5 * drift[0.0]
