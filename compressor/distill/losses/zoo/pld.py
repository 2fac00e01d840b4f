"""Plackett-Luce distillation (Bassam, Zhu, Bian, arXiv 2506.12542): list-wise, choice-theoretic KD.

The target ranking ``pi*`` is the true label first, then the other classes by descending teacher logit;
``L = sum_k alpha_k * (log sum_{l >= k} exp(s_{pi*_l}) - s_{pi*_k})`` with ``alpha = softmax(t / tau)``
taken at ``pi*``: each rank's choice among those left is weighted by the teacher's confidence. Sum over
ranks, mean over samples. It replaces cross-entropy (use it without a CE term); ``tau`` applies to the
teacher only (1 on ImageNet in the paper). Computed as the paper's Appendix C: teacher-ascending order with
the label moved last, a forward log-cum-sum-exp.
"""
from __future__ import annotations

import torch
from torch import Tensor

from compressor.distill.losses.zoo._pairs import check_same_shape
from compressor.distill.losses.zoo.base import (
    KDBatch,
    KDInputError,
    KDLoss,
    register_loss,
)

NAME = "pld"


def pld_per_sample(student: Tensor, teacher: Tensor, labels: Tensor, temperature: float = 1.0) -> Tensor:
    """Per-sample PLD for N x C logits and N class indices."""
    teacher = teacher.detach()
    key = teacher.scatter(-1, labels[:, None], float("inf"))  # the label ranks first (last when ascending)
    order = key.argsort(dim=-1)
    scores = student.gather(-1, order)
    weights = torch.softmax(teacher / temperature, dim=-1).gather(-1, order)
    return (weights * (scores.logcumsumexp(dim=-1) - scores)).sum(dim=-1)


def pld_loss(student: Tensor, teacher: Tensor, labels: Tensor, temperature: float = 1.0) -> Tensor:
    """Mean over samples of :func:`pld_per_sample`."""
    return pld_per_sample(student, teacher, labels, temperature).mean()


@register_loss(NAME, description="Plackett-Luce KD: teacher-weighted list-wise ranking loss (replaces CE)",
               needs=("logits", "labels"), reference="arXiv 2506.12542")
class PlackettLuceKD(KDLoss):
    """PLD on ``batch.student`` / ``batch.teacher`` N x C logits and ``batch.labels``."""

    def __init__(self, *, temperature: float = 1.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise KDInputError(f"loss '{NAME}': temperature must be positive, got {temperature}")
        self.temperature = float(temperature)

    def forward(self, batch: KDBatch) -> Tensor:
        batch.need("student", "teacher", "labels", loss=NAME)
        check_same_shape(batch.student, batch.teacher, loss=NAME)
        if batch.student.dim() != 2:
            raise KDInputError(f"loss '{NAME}' needs N x C logits, got {tuple(batch.student.shape)}")
        return pld_loss(batch.student, batch.teacher, batch.labels, self.temperature)
