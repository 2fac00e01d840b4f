"""ConvLoRA: starts at the base, merges exactly, freezes the base; the DSCLoRA student merges into SPAN-Tiny."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from compressor.models import create_model
from compressor.models.layers import ConvLoRA, apply_conv_lora, merge_conv_lora
from compressor.models.span import dsclora_tiny, span_tiny


def perturb_lora(model: nn.Module, seed: int = 0) -> None:
    """Stand-in for training: give every B a non-zero value."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("lora_B"):
                param.copy_(torch.randn(param.shape, generator=gen) * 1e-2)


@pytest.mark.parametrize("conv", [
    nn.Conv2d(4, 6, 3, padding=1),
    nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=2),
    nn.Conv2d(5, 3, 1),
    nn.Conv2d(4, 6, 3, padding=1, padding_mode="reflect", bias=False),
])
def test_starts_exactly_at_the_base_and_merges_exactly(conv):
    lora = ConvLoRA(conv, rank=2, alpha=4.0).double()
    x = torch.randn(2, conv.in_channels, 9, 9, dtype=torch.float64)
    assert torch.equal(lora(x), conv(x))
    perturb_lora(lora)
    lora.double()
    merged = lora.merge()
    assert isinstance(merged, nn.Conv2d) and not isinstance(merged, ConvLoRA)
    assert (merged(x) - lora(x)).abs().max().item() < 1e-12
    expected = conv.weight + (lora.lora_B @ lora.lora_A).view(conv.weight.shape) * (4.0 / 2)
    assert torch.allclose(merged.weight, expected, atol=0, rtol=0)


def test_base_is_frozen_and_only_lora_gets_gradients():
    conv = nn.Conv2d(3, 4, 3, padding=1)
    lora = ConvLoRA(conv, rank=1, alpha=2.0)
    perturb_lora(lora)
    lora(torch.randn(1, 3, 5, 5)).sum().backward()
    assert not conv.weight.requires_grad and not conv.bias.requires_grad
    assert conv.weight.grad is None and conv.bias.grad is None
    assert lora.lora_A.grad is not None and lora.lora_B.grad is not None


def test_delta_rank_is_at_most_rank_times_kernel():
    lora = ConvLoRA(nn.Conv2d(16, 16, 3, padding=1), rank=2, alpha=4.0)
    perturb_lora(lora)
    delta = lora.delta_weight().detach().reshape(16 * 3, 16 * 3)  # the memory view loralib's B @ A fills
    assert torch.linalg.matrix_rank(delta).item() <= 2 * 3


def test_apply_rejects_a_target_that_matches_nothing():
    with pytest.raises(ValueError, match="matches no nn.Conv2d"):
        apply_conv_lora(span_tiny(), rank=2, alpha=4.0, target="block_9.*")


def test_apply_and_merge_round_trip_in_place():
    model = span_tiny()
    wrapped = apply_conv_lora(model, rank=2, alpha=4.0, target=["block_1.c1_r.eval_conv", "conv_cat"])
    assert wrapped == ["block_1.c1_r.eval_conv", "conv_cat"]
    with pytest.raises(ValueError):  # the wrapped base convs are not offered again
        apply_conv_lora(model, rank=2, alpha=4.0, target="conv_cat*")
    assert merge_conv_lora(model) is model
    assert not any(isinstance(m, ConvLoRA) for m in model.modules())


def test_dsclora_student_wraps_twenty_convs_and_trains_only_lora():
    student = create_model("dsclora_tiny")
    wrapped = [name for name, m in student.named_modules() if isinstance(m, ConvLoRA)]
    assert len(wrapped) == 20 and "upsampler.0" in wrapped and "conv_2.eval_conv" in wrapped
    trainable = {name.rsplit(".", 1)[-1] for name, p in student.named_parameters() if p.requires_grad}
    assert trainable == {"lora_A", "lora_B"}
    # 18 block convs (rank 2): 2 * (6 * 78); conv_2 (rank 8): 2 * (24 * 78); upsampler: 24 * 78 + 144 * 24.
    assert sum(p.numel() for p in student.parameters() if p.requires_grad) == 25_920


def test_dsclora_starts_at_its_base_and_merges_into_span_tiny(tmp_path):
    base = span_tiny().eval()
    path = tmp_path / "base.pth"
    torch.save(base.state_dict(), path)
    student = dsclora_tiny(weights=path).eval()
    x = torch.rand(1, 3, 12, 10)
    with torch.no_grad():
        assert torch.equal(student(x), base(x))
        perturb_lora(student)
        before = student(x)
        merged = merge_conv_lora(student)
        assert sum(p.numel() for p in merged.parameters()) == 130_828
        target = span_tiny()
        target.load_state_dict(merged.state_dict(), strict=True)
        assert (target.eval()(x) - before).abs().max().item() < 1e-4 * before.abs().max().item()


def test_dsclora_checkpoint_with_lora_keys_round_trips(tmp_path):
    student = dsclora_tiny()
    perturb_lora(student)
    path = tmp_path / "student.pth"
    torch.save(student.state_dict(), path)
    again = dsclora_tiny(weights=path)
    for key, value in student.state_dict().items():
        assert torch.equal(again.state_dict()[key], value)
