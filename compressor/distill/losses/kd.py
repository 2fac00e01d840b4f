"""Response- and feature-based distillation losses for classifiers (LSF-IDM's BERT -> BiLSTM).

``SoftTargetKLLoss`` is Hinton et al.'s soft-target term: ``T^2 * KL(softmax(t / T) || softmax(s / T))``,
averaged over the batch (the ``T^2`` keeps its gradient scale independent of ``T``). ``FeatureFusionLoss``
is the optional semantic-feature term: a learned linear map of the student's sentence feature onto the
teacher's pooled feature, compared by mean squared error; the map is trained with the student and is not
part of the deployed model. Both detach the teacher, so it never receives a gradient.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from compressor.core.errors import CompressError
from compressor.distill.losses.precision import float32_loss


class LogitShapeError(CompressError, ValueError):
    """Student and teacher outputs that cannot be compared."""


class SoftTargetKLLoss(nn.Module):
    """``T^2 * KL(p_teacher^T || p_student^T)`` with ``p^T = softmax(logits / T)``, batch mean.

    >>> SoftTargetKLLoss(temperature=2.0)(torch.zeros(4, 5), torch.zeros(4, 5))
    tensor(0.)
    """

    def __init__(self, temperature: float = 2.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = float(temperature)

    @float32_loss
    def forward(self, student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
        if student_logits.shape != teacher_logits.shape or student_logits.dim() != 2:
            raise LogitShapeError(f"KD needs equal N x C logits, got {tuple(student_logits.shape)} and "
                                  f"{tuple(teacher_logits.shape)}")
        t = self.temperature
        log_student = F.log_softmax(student_logits / t, dim=-1)
        log_teacher = F.log_softmax(teacher_logits.detach() / t, dim=-1)
        kl = (log_teacher.exp() * (log_teacher - log_student)).sum(dim=-1)
        return t * t * kl.mean()


class FeatureFusionLoss(nn.Module):
    """``mean((W s + b - t)^2)``: the student's feature mapped onto the teacher's semantic feature."""

    def __init__(self, student_dim: int, teacher_dim: int) -> None:
        super().__init__()
        self.projection = nn.Linear(student_dim, teacher_dim)

    def forward(self, student_features: Tensor, teacher_features: Tensor) -> Tensor:
        if student_features.dim() != 2 or student_features.shape[0] != teacher_features.shape[0]:
            raise LogitShapeError(f"feature fusion needs N x D features, got {tuple(student_features.shape)} "
                                  f"and {tuple(teacher_features.shape)}")
        return F.mse_loss(self.projection(student_features), teacher_features.detach())
