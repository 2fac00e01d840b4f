"""Margin-MSE (Hofstaetter et al., arXiv 2010.02666): cross-architecture ranking distillation.

``L = mean_b [(s+ - s-) - (t+ - t-)]^2`` on four B-vectors of relevance scores, read from ``batch.extras``:
``student_pos``, ``student_neg`` (the student's scores of the positive and the negative passage) and
``teacher_pos``, ``teacher_neg`` (usually precomputed offline; the paper's teacher is a mean of three
cross-encoders). Score offsets cancel, scale does not: do not normalise the scores.
"""
from __future__ import annotations

from torch import Tensor

from compressor.distill.losses.zoo.base import (
    KDBatch,
    KDInputError,
    KDLoss,
    register_loss,
)

NAME = "margin_mse"
KEYS = ("student_pos", "student_neg", "teacher_pos", "teacher_neg")


def margin_mse(student_pos: Tensor, student_neg: Tensor, teacher_pos: Tensor, teacher_neg: Tensor) -> Tensor:
    """``mean(((s+ - s-) - (t+ - t-))^2)``; the teacher margins are detached."""
    return ((student_pos - student_neg) - (teacher_pos - teacher_neg).detach()).pow(2).mean()


@register_loss(NAME, description="Margin-MSE: MSE between student and teacher (positive - negative) score margins",
               needs=("scores",), reference="arXiv 2010.02666")
class MarginMSE(KDLoss):
    """Margin-MSE on ``batch.extras`` keys student_pos, student_neg, teacher_pos, teacher_neg."""

    def forward(self, batch: KDBatch) -> Tensor:
        missing = [key for key in KEYS if key not in batch.extras]
        if missing:
            raise KDInputError(f"loss '{NAME}' needs extras {', '.join(KEYS)}; missing {', '.join(missing)}")
        scores = [batch.extras[key].reshape(-1) for key in KEYS]
        if len({s.shape[0] for s in scores}) != 1:
            raise KDInputError(f"loss '{NAME}' needs four score vectors of one length, got "
                               f"{[s.shape[0] for s in scores]}")
        return margin_mse(*scores)
