"""LSF-IDM distillation losses: golden values from a numpy re-implementation, plus properties."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from compressor.core.errors import CompressError
from compressor.distill.distillers.logit_kd import (
    FeaturePair,
    LogitKDistiller,
    LogitKDWeights,
    teacher_outputs,
)
from compressor.distill.losses.kd import (
    FeatureFusionLoss,
    LogitShapeError,
    SoftTargetKLLoss,
)
from tests.support import FIXTURES

GOLDEN = json.loads((FIXTURES / "kd_golden.json").read_text())


@pytest.mark.parametrize("case", GOLDEN["cases"], ids=lambda c: c["name"])
def test_matches_golden_values(case):
    student = torch.tensor(case["student"], dtype=torch.float64)
    teacher = torch.tensor(case["teacher"], dtype=torch.float64)
    loss = SoftTargetKLLoss(case["temperature"])(student, teacher)
    assert loss.item() == pytest.approx(case["expected"], rel=1e-12, abs=1e-12)


def test_zero_when_student_equals_teacher_and_positive_otherwise():
    logits = torch.randn(8, 5)
    assert SoftTargetKLLoss(2.0)(logits, logits.clone()).item() == pytest.approx(0.0, abs=1e-7)
    assert SoftTargetKLLoss(2.0)(logits, torch.randn(8, 5)).item() > 0
    # a constant shift of the logits is the same distribution
    assert SoftTargetKLLoss(3.0)(logits + 7.0, logits).item() == pytest.approx(0.0, abs=1e-6)


def test_gradient_is_t_times_probability_difference_and_teacher_gets_none():
    """d/ds [T^2 KL(p_t || p_s)] = T (p_s - p_t) / N: the T^2 keeps the gradient scale of plain CE."""
    temperature = 3.0
    student = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    SoftTargetKLLoss(temperature)(student, teacher).backward()
    expected = temperature * (F.softmax(student / temperature, 1) - F.softmax(teacher / temperature, 1)) / 4
    assert torch.allclose(student.grad, expected.detach(), atol=1e-12)
    assert teacher.grad is None


def test_bad_shapes_and_temperature_are_typed_errors():
    with pytest.raises(LogitShapeError):
        SoftTargetKLLoss()(torch.zeros(2, 5), torch.zeros(2, 4))
    assert issubclass(LogitShapeError, CompressError)
    with pytest.raises(ValueError, match="temperature"):
        SoftTargetKLLoss(0.0)


def test_feature_fusion_is_zero_for_an_exact_map_and_spares_the_teacher():
    fusion = FeatureFusionLoss(3, 2)
    with torch.no_grad():
        fusion.projection.weight.copy_(torch.tensor([[1.0, 0.0, 2.0], [0.0, -1.0, 0.0]]))
        fusion.projection.bias.zero_()
    student = torch.randn(6, 3)
    teacher = (student @ fusion.projection.weight.T).detach().requires_grad_(True)
    assert fusion(student, teacher).item() == pytest.approx(0.0, abs=1e-10)
    fusion(torch.randn(6, 3, requires_grad=True), teacher).backward()
    assert teacher.grad is None and fusion.projection.weight.grad is not None


class _Tiny(nn.Module):
    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, width)
        self.features = nn.Identity()
        self.head = nn.Linear(width, 3)

    def forward(self, tokens):
        return self.head(self.features(self.embed(tokens).mean(1)))


def test_distiller_weights_combine_the_terms():
    torch.manual_seed(0)
    student, teacher = _Tiny(), _Tiny(6)
    tokens, labels = torch.randint(0, 10, (8, 5)), torch.randint(0, 3, (8,))
    fusion = FeatureFusionLoss(4, 6)
    weights = LogitKDWeights(label=0.3, soft=0.7, feature=0.2)
    distiller = LogitKDistiller(student, weights, teacher=teacher, temperature=2.0,
                                pair=FeaturePair("features", "features"), fusion=fusion)
    total, parts = distiller(tokens, labels)
    expected = 0.3 * parts["ce"] + 0.7 * parts["kd"] + 0.2 * parts["feature"]
    assert total.item() == pytest.approx(expected, rel=1e-6)
    assert parts["ce"] == pytest.approx(F.cross_entropy(student(tokens), labels).item(), rel=1e-6)
    # precomputed teacher outputs give the same loss as running the teacher
    logits, feats = teacher_outputs(teacher, [tokens.numpy()], feature_path="features")
    again, _ = distiller(tokens, labels, torch.from_numpy(logits), torch.from_numpy(feats))
    assert again.item() == pytest.approx(total.item(), rel=1e-6)
    assert all(p.grad is None for p in teacher.parameters())


def test_baseline_weights_never_touch_the_teacher():
    student = _Tiny()
    distiller = LogitKDistiller(student, LogitKDWeights(label=1.0, soft=0.0), teacher=None)
    tokens, labels = torch.randint(0, 10, (4, 5)), torch.randint(0, 3, (4,))
    total, parts = distiller(tokens, labels)
    assert set(parts) == {"ce"} and total.item() == pytest.approx(F.cross_entropy(student(tokens), labels).item())
    assert np.isfinite(total.item())
