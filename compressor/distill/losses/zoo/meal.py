"""MEAL V2's soft-label term (Shen & Savvides, arXiv 2009.08453): cross-entropy to the teachers' mean
probabilities, ``-mean_b sum_c pbar log softmax(z_s)`` with ``pbar = mean_k softmax(z_k)`` (T = 1), no
one-hot term. The released ``train.py`` also adds a (non-adversarial) discriminator BCE, left out here.
``batch.teacher`` holds one teacher's N x C logits or K x N x C for an ensemble. ``form: kl`` subtracts the
target's entropy (zero when the student matches the mean teacher; same gradient).
"""
from __future__ import annotations

import torch
from torch import Tensor

from compressor.distill.losses.zoo.base import (
    KDBatch,
    KDInputError,
    KDLoss,
    register_loss,
)

NAME = "meal"
FORMS = ("ce", "kl")


def ensemble_probabilities(teachers: Tensor) -> Tensor:
    """``mean_k softmax(z_k)`` of K x N x C teacher logits (detached)."""
    return torch.softmax(teachers.detach(), dim=-1).mean(dim=0)


def meal_soft_label(student: Tensor, teachers: Tensor, form: str = "ce") -> Tensor:
    """``-mean sum pbar log q`` (``ce``) or ``KL(pbar || q)`` (``kl``); ``teachers`` is N x C or K x N x C."""
    if teachers.dim() == student.dim():
        teachers = teachers.unsqueeze(0)
    target = ensemble_probabilities(teachers)
    per_sample = -(target * torch.log_softmax(student, dim=-1)).sum(dim=-1)
    if form == "kl":
        per_sample = per_sample + (target * target.clamp_min(1e-30).log()).sum(dim=-1)
    return per_sample.mean()


@register_loss(NAME, description="MEAL V2 soft labels: CE to the mean of the teachers' softmax (no one-hot)",
               needs=("logits",), reference="arXiv 2009.08453")
class MealSoftLabel(KDLoss):
    """The soft-label term on ``batch.student`` and ``batch.teacher`` (N x C, or K x N x C for K teachers)."""

    def __init__(self, *, form: str = "ce") -> None:
        super().__init__()
        if form not in FORMS:
            raise KDInputError(f"loss '{NAME}': form must be ce or kl, got {form!r}")
        self.form = form

    def forward(self, batch: KDBatch) -> Tensor:
        batch.need("student", "teacher", loss=NAME)
        student, teacher = batch.student, batch.teacher
        if teacher.shape[-student.dim():] != student.shape or teacher.dim() > student.dim() + 1:
            raise KDInputError(f"loss '{NAME}' needs teacher logits shaped like the student's "
                               f"{tuple(student.shape)} (or K x that), got {tuple(teacher.shape)}")
        return meal_soft_label(student, teacher, self.form)
