"""SPAN: preset sizes, exact Conv3XC fusion, published-checkpoint parity, weight-loading errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from compressor.core.errors import CompressError, ModelSpecError
from compressor.models import create_model, list_models
from compressor.models.layers import Conv3XC
from compressor.models.span import SPAN, span_28, span_48, span_tiny
from tests.support import SHARED

REFERENCE = SHARED / "reference" / "span"
PRESETS = {"span_tiny": 130_828, "span_28": 150_688, "span_48": 426_288}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name,expected", PRESETS.items())
def test_preset_inference_param_counts(name, expected):
    assert name in list_models("span_*")
    assert n_params(create_model(name)) == expected


def test_training_form_param_count_of_span_tiny():
    # The research notes' count for SPAN-26 with its Conv3XC branches (no eval_conv copies).
    assert n_params(span_tiny(fused=False)) == 547_944


def test_fused_state_dict_uses_published_layout():
    keys = set(span_tiny().state_dict())
    assert len(keys) == 44 and "mean" not in keys
    for key in ("conv_1.eval_conv.weight", "block_1.c1_r.eval_conv.weight", "block_6.c3_r.eval_conv.bias",
                "conv_2.eval_conv.weight", "conv_cat.weight", "upsampler.0.weight"):
        assert key in keys


def test_model_declares_input_and_output():
    from compressor.core.tensor_spec import TensorSpec

    model = span_28()
    spec = TensorSpec.parse(model.input_specs[0])
    assert spec.name == "image" and spec.shape == ("N", 3, "H", "W") and (spec.low, spec.high) == (0, 1)
    assert model.output_names == ["sr"] and "x4" in model.preprocessing


@pytest.mark.parametrize("c_in,c_out", [(3, 8), (8, 8), (8, 5)])
def test_conv3xc_fusion_is_exact_including_borders(c_in, c_out):
    torch.manual_seed(0)
    conv = Conv3XC(c_in, c_out).double()
    x = torch.randn(2, c_in, 7, 9, dtype=torch.float64)
    ref = conv(x)
    conv.fuse()
    assert conv.fused and set(dict(conv.named_children())) == {"eval_conv"}
    assert (conv(x) - ref).abs().max().item() < 1e-12


def test_conv3xc_fusion_float32_within_1e6_relative():
    torch.manual_seed(1)
    conv = Conv3XC(16, 16)
    x = torch.randn(1, 16, 12, 12)
    ref = conv(x).detach()
    conv.fuse()
    assert ((conv(x) - ref).abs().max() / ref.abs().max()).item() < 1e-6


def test_training_form_equals_fused_form_after_fuse():
    torch.manual_seed(2)
    model = SPAN(feature_channels=8, upscale=2, fused=False).double().eval()
    x = torch.rand(1, 3, 11, 13, dtype=torch.float64)
    with torch.no_grad():
        ref = model(x)
        out = model.fuse()(x)
    assert model.fused and out.shape == (1, 3, 22, 26)
    assert (out - ref).abs().max().item() < 1e-10
    assert set(model.state_dict()) == set(SPAN(feature_channels=8, upscale=2, fused=True).state_dict())


def test_block_hands_on_the_activated_first_conv_output():
    block = span_tiny().block_6
    x = torch.randn(1, 26, 6, 6)
    _, a1 = block(x)
    assert torch.allclose(a1, torch.nn.functional.silu(block.c1_r(x)))


@pytest.mark.parametrize("upscale", [2, 3, 4])
def test_forward_shapes(upscale):
    model = span_tiny(upscale=upscale).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, 9, 7)).shape == (2, 3, 9 * upscale, 7 * upscale)


@pytest.mark.parametrize("key,factory,filename", [
    ("spantiny26", span_tiny, "spantiny26.pth"),
    ("span28", span_28, "span28.pth"),
    ("dscf26", span_tiny, "team23_DSCF.pth"),
])
def test_published_checkpoints_reproduce_golden_outputs(key, factory, filename):
    if not (REFERENCE / "golden.npz").is_file():
        pytest.skip(f"published SPAN checkpoints not present at {REFERENCE}")
    golden = np.load(REFERENCE / "golden.npz")
    model = factory(weights=REFERENCE / filename).eval()
    with torch.no_grad():
        out = model(torch.from_numpy(golden["input"])).numpy()
    assert out.shape == golden[key].shape
    assert np.abs(out - golden[key]).max() < 1e-4


def test_missing_weights_file_is_a_one_line_model_spec_error(tmp_path):
    with pytest.raises(ModelSpecError, match="not found") as info:
        span_tiny(weights=tmp_path / "nope.pth")
    assert "\n" not in str(info.value)


def test_mismatched_weights_name_the_problem(tmp_path):
    path = tmp_path / "span28.pth"
    torch.save(span_28().state_dict(), path)
    with pytest.raises(ModelSpecError, match="shape mismatches") as info:
        span_tiny(weights=path)
    assert "span_tiny" in str(info.value) and "\n" not in str(info.value)


def test_garbage_weights_file_is_a_model_spec_error(tmp_path):
    path = tmp_path / "bad.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CompressError, match="cannot read weights"):
        span_48(weights=path)


def test_fused_weights_cannot_load_into_training_form(tmp_path):
    path = tmp_path / "fused.pth"
    torch.save(span_tiny().state_dict(), path)
    with pytest.raises(ModelSpecError, match="fused=True"):
        span_tiny(weights=path, fused=False)


def test_training_checkpoint_with_eval_conv_copies_loads_into_training_form(tmp_path):
    # Upstream training checkpoints (BasicSR {"params": ...}) hold the branches and eval_conv copies.
    source = span_tiny(fused=False)
    fused_copy = {k: v for k, v in span_tiny(fused=False).fuse().state_dict().items() if "eval_conv" in k}
    path = tmp_path / "train.pth"
    torch.save({"params": {**source.state_dict(), **fused_copy}}, path)
    loaded = span_tiny(weights=path, fused=False)
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
