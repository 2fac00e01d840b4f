"""Hinton KD (Hinton, Vinyals, Dean, arXiv 1503.02531): ``T^2 * KL(softmax(t/T) || softmax(s/T))``.

Sum over classes, mean over every other position (samples, or tokens for B x L x C logits). ``T^2`` keeps
the gradient size independent of ``T``. Reference weights (mdistiller): CIFAR T=4 with 0.1 CE + 0.9 KD;
ImageNet T=1 with 0.5 + 0.5 (weights belong to the recipe, not the loss).
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from compressor.distill.losses.zoo._pairs import check_same_shape
from compressor.distill.losses.zoo.base import (
    KDBatch,
    KDInputError,
    KDLoss,
    register_loss,
)

NAME = "hinton"


def hinton_kd(student: Tensor, teacher: Tensor, temperature: float = 4.0) -> Tensor:
    """``T^2 * mean KL(softmax(teacher/T) || softmax(student/T))`` over the last (class) axis."""
    log_s = F.log_softmax(student / temperature, dim=-1)
    log_t = F.log_softmax(teacher.detach() / temperature, dim=-1)
    kl = (log_t.exp() * (log_t - log_s)).sum(dim=-1)
    return temperature * temperature * kl.mean()


@register_loss(NAME, description="Hinton KD: T^2 * KL(softmax(teacher/T) || softmax(student/T))",
               needs=("logits",), reference="arXiv 1503.02531")
class HintonKD(KDLoss):
    """The soft-target term at ``temperature``; reads ``batch.student`` / ``batch.teacher`` logits."""

    def __init__(self, *, temperature: float = 4.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise KDInputError(f"loss '{NAME}': temperature must be positive, got {temperature}")
        self.temperature = float(temperature)

    def forward(self, batch: KDBatch) -> Tensor:
        batch.need("student", "teacher", loss=NAME)
        check_same_shape(batch.student, batch.teacher, loss=NAME)
        return hinton_kd(batch.student, batch.teacher, self.temperature)
