"""Decoupled KD (Zhao et al., CVPR 2022, arXiv 2203.08679): ``alpha * TCKD + beta * NCKD``.

With ``b = [p_y, 1 - p_y]`` and ``p^`` the softmax over the non-target classes, both at temperature ``T``:
``TCKD = T^2 * KL(b_T || b_S)``, ``NCKD = T^2 * KL(p^_T || p^_S)``, each summed and divided by the batch.
Computed with log-sum-exps instead of the reference's ``-1000`` mask and ``log`` of probabilities (same
values, no overflow in half precision). Reference defaults: CIFAR alpha 1, beta 8, T 4, warm-up 20 epochs
(beta 2 for resnet56/110 pairs, 6 for WRN/VGG13); ImageNet alpha 1, beta 0.5 (R34->R18) or 2, T 1, warm-up 1.
``warmup_steps`` (0: off) multiplies by ``min((step + 1) / warmup_steps, 1)`` as the reference's 1-based
epoch counter does; leave it 0 when the recipe's weight schedule already warms up.
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

NAME = "dkd"


def _split(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(log b, as B x 2) and (non-target logits, B x C-1) and the full log-sum-exp, for scaled logits."""
    lse = logits.logsumexp(dim=-1)
    target = logits.gather(-1, labels[:, None]).squeeze(-1)
    keep = torch.ones_like(logits, dtype=torch.bool).scatter_(-1, labels[:, None], False)
    others = logits[keep].view(logits.shape[0], -1)
    log_b = torch.stack([target - lse, others.logsumexp(dim=-1) - lse], dim=-1)
    return log_b, others, lse


def dkd_parts(student: Tensor, teacher: Tensor, labels: Tensor, temperature: float = 4.0) -> tuple[Tensor, Tensor]:
    """``(TCKD, NCKD)``, each ``T^2 * sum KL / B``, for N x C logits and N class indices."""
    t = temperature
    log_bs, others_s, _ = _split(student / t, labels)
    log_bt, others_t, _ = _split(teacher.detach() / t, labels)
    tckd = (log_bt.exp() * (log_bt - log_bs)).sum() / student.shape[0]
    log_ps, log_pt = others_s.log_softmax(dim=-1), others_t.log_softmax(dim=-1)
    nckd = (log_pt.exp() * (log_pt - log_ps)).sum() / student.shape[0]
    return t * t * tckd, t * t * nckd


def dkd_loss(student: Tensor, teacher: Tensor, labels: Tensor, alpha: float = 1.0, beta: float = 8.0,
             temperature: float = 4.0) -> Tensor:
    """``alpha * TCKD + beta * NCKD`` (no warm-up)."""
    tckd, nckd = dkd_parts(student, teacher, labels, temperature)
    return alpha * tckd + beta * nckd


@register_loss(NAME, description="Decoupled KD: alpha * target-class KD + beta * non-target-class KD",
               needs=("logits", "labels"), reference="arXiv 2203.08679")
class DecoupledKD(KDLoss):
    """DKD on ``batch.student`` / ``batch.teacher`` N x C logits and ``batch.labels``."""

    def __init__(self, *, alpha: float = 1.0, beta: float = 8.0, temperature: float = 4.0,
                 warmup_steps: int = 0) -> None:
        super().__init__()
        if temperature <= 0 or warmup_steps < 0:
            raise KDInputError(f"loss '{NAME}': temperature must be positive and warmup_steps >= 0")
        self.alpha, self.beta, self.temperature = float(alpha), float(beta), float(temperature)
        self.warmup_steps = int(warmup_steps)

    def forward(self, batch: KDBatch) -> Tensor:
        batch.need("student", "teacher", "labels", loss=NAME)
        check_same_shape(batch.student, batch.teacher, loss=NAME)
        if batch.student.dim() != 2:
            raise KDInputError(f"loss '{NAME}' needs N x C logits, got {tuple(batch.student.shape)}")
        loss = dkd_loss(batch.student, batch.teacher, batch.labels, self.alpha, self.beta, self.temperature)
        if self.warmup_steps:
            loss = loss * min((batch.step + 1) / self.warmup_steps, 1.0)
        return loss
