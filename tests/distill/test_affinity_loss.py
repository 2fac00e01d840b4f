"""Spatial-affinity KD loss: golden values from a numpy re-implementation, plus properties."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from compressor.core.errors import CompressError
from compressor.distill.losses import (
    FeatureShapeError,
    PositionReduction,
    SpatialAffinityLoss,
    spatial_affinity,
)
from compressor.distill.losses.affinity import pooled_size
from tests.support import FIXTURES

GOLDEN = json.loads((FIXTURES / "affinity_golden.json").read_text())


@pytest.mark.parametrize("case", GOLDEN["cases"], ids=lambda c: c["name"])
def test_matches_golden_values(case):
    students = [torch.tensor(a, dtype=torch.float64) for a in case["student"]]
    teachers = [torch.tensor(a, dtype=torch.float64) for a in case["teacher"]]
    loss = SpatialAffinityLoss(max_positions=case["max_positions"])(students, teachers)
    assert loss.item() == pytest.approx(case["expected"], rel=1e-12, abs=1e-12)


def test_zero_when_student_equals_teacher():
    feats = [torch.randn(2, 8, 6, 5), torch.randn(2, 4, 3, 3)]
    assert SpatialAffinityLoss()(feats, [f.clone() for f in feats]).item() == pytest.approx(0.0, abs=1e-6)


def test_different_channel_counts_and_a_single_pair():
    loss = SpatialAffinityLoss()(torch.randn(2, 26, 8, 8), torch.randn(2, 48, 8, 8))
    assert loss.dim() == 0 and torch.isfinite(loss) and loss.item() > 0


def test_teacher_gets_no_gradient_and_student_does():
    student = torch.randn(1, 4, 6, 6, requires_grad=True)
    teacher = torch.randn(1, 6, 6, 6, requires_grad=True)
    SpatialAffinityLoss()([student], [teacher]).backward()
    assert teacher.grad is None
    assert student.grad is not None and student.grad.abs().sum() > 0


def test_affinity_is_cosine_similarity_of_positions():
    feats = torch.randn(1, 5, 3, 4, dtype=torch.float64)
    affinity = spatial_affinity(feats)
    flat = feats.flatten(2)[0]
    expected = F.cosine_similarity(flat.T[:, None, :], flat.T[None, :, :], dim=-1)
    assert affinity.shape == (1, 12, 12)
    assert torch.allclose(affinity[0], expected, atol=1e-6)


def test_pooled_size_is_bounded_and_keeps_small_maps():
    assert pooled_size(8, 8, 64) == (8, 8)
    for height, width, limit in [(64, 64, 1024), (48, 40, 500), (1000, 3, 10), (7, 13, 1)]:
        h, w = pooled_size(height, width, limit)
        assert 1 <= h <= height and 1 <= w <= width and h * w <= limit


def test_pool_reduction_equals_loss_on_pooled_maps():
    student, teacher = torch.randn(2, 4, 16, 12), torch.randn(2, 6, 16, 12)
    loss = SpatialAffinityLoss(max_positions=48)(student, teacher)
    size = pooled_size(16, 12, 48)
    plain = SpatialAffinityLoss(max_positions=None)(F.adaptive_avg_pool2d(student, size),
                                                    F.adaptive_avg_pool2d(teacher, size))
    assert size == (8, 6) and loss.item() == pytest.approx(plain.item(), rel=1e-6)


def test_sampling_is_reproducible_and_bounded_for_large_maps():
    student, teacher = torch.randn(1, 4, 128, 128), torch.randn(1, 8, 128, 128)  # full affinity: 1 GiB
    def run(seed: int) -> float:
        gen = torch.Generator().manual_seed(seed)
        return SpatialAffinityLoss(max_positions=512, reduction="sample", generator=gen)(student, teacher).item()
    assert run(0) == run(0) and run(0) != run(1)
    assert SpatialAffinityLoss(max_positions=512, reduction=PositionReduction.SAMPLE)(student, student).item() \
        == pytest.approx(0.0, abs=1e-6)


def test_mismatched_pairs_raise_a_typed_error():
    loss = SpatialAffinityLoss()
    with pytest.raises(FeatureShapeError, match="spatial"):
        loss(torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 6))
    with pytest.raises(CompressError, match="numbers"):
        loss([torch.randn(1, 4, 8, 8)], [])
    with pytest.raises(ValueError):
        SpatialAffinityLoss(reduction="median")
