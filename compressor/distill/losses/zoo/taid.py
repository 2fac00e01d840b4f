"""TAID, temporally adaptive interpolated distillation (Shing et al., ICLR 2025, arXiv 2501.16937).

The target interpolates in logit space between the (detached) student and the teacher,
``p_t = softmax((1 - t) * sg(z_s) + t * z_t)``, and the loss is the reference code's cross-entropy
``-sum p_t log softmax(z_s)`` averaged over tokens (``form: kl`` gives the paper's ``KL(p_t || q)``: the same
gradient, zero when the student equals the teacher). No temperature. After each training call ``t`` moves
on the detached loss ``J``: ``delta = (J_prev - J) / (J_prev + 1e-15)``, ``m = beta m + (1 - beta) delta``,
``t = min(t_end, max(t_linear(step), t + alpha * sigmoid(m) * (1 - t)))`` with ``t_linear`` going from
``t_start`` to ``t_end`` over ``batch.total_steps``; the first call only stores ``J``. Evaluation calls
(``module.eval()``) leave the state alone. Logits are N x C or B x L x C; with ``batch.labels`` of the
leading shape, positions labelled ``ignore_index`` are left out (shift language-model labels beforehand).
Reference defaults: t_start 0.4 (Phi-3; 0.2 for Llama-2/StableLM), t_end 1, alpha 5e-4, beta 0.99.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from compressor.distill.losses.zoo._pairs import check_same_shape
from compressor.distill.losses.zoo.base import (
    KDBatch,
    KDInputError,
    KDLoss,
    register_loss,
)

NAME = "taid"
FORMS = ("ce", "kl")


def taid_target(student: Tensor, teacher: Tensor, t: float | Tensor) -> Tensor:
    """``softmax((1 - t) * sg(student) + t * teacher)`` over the last axis (both sides detached)."""
    return torch.softmax((1 - t) * student.detach() + t * teacher.detach(), dim=-1)


def taid_loss(student: Tensor, teacher: Tensor, t: float | Tensor, mask: Tensor | None = None,
              form: str = "ce") -> Tensor:
    """Mean over (unmasked) positions of ``-sum p_t log q`` (``ce``) or ``KL(p_t || q)`` (``kl``)."""
    target = taid_target(student, teacher, t)
    log_q = torch.log_softmax(student, dim=-1)
    per_position = -(target * log_q).sum(dim=-1)
    if form == "kl":
        per_position = per_position + (target * target.clamp_min(1e-30).log()).sum(dim=-1)
    if mask is None:
        return per_position.mean()
    return (per_position * mask).sum() / mask.sum().clamp_min(1)


def taid_update(t: float, momentum: float, previous: float, loss: float, step: int, total_steps: int, *,
                t_start: float = 0.4, t_end: float = 1.0, alpha: float = 5e-4,
                beta: float = 0.99) -> tuple[float, float]:
    """The next ``(t, momentum)`` after a call whose detached loss was ``loss`` (``previous`` before it)."""
    delta = (previous - loss) / (previous + 1e-15)
    momentum = beta * momentum + (1 - beta) * delta
    t_linear = t_start + (t_end - t_start) * min(step / max(total_steps, 1), 1.0)
    adaptive = t + alpha * (1 / (1 + math.exp(-momentum))) * (1 - t)
    return min(t_end, max(t_linear, adaptive)), momentum


@register_loss(NAME, description="TAID: CE to a target interpolated from student to teacher logits, t adapts",
               needs=("logits", "step"), reference="arXiv 2501.16937")
class TAID(KDLoss):
    """TAID with state ``t``, ``momentum`` and the previous loss (buffers, so checkpoints keep them)."""

    def __init__(self, *, t_start: float = 0.4, t_end: float = 1.0, alpha: float = 5e-4, beta: float = 0.99,
                 form: str = "ce", ignore_index: int = -100) -> None:
        super().__init__()
        if form not in FORMS or not 0 <= t_start <= t_end <= 1:
            raise KDInputError(f"loss '{NAME}': form is ce or kl and 0 <= t_start <= t_end <= 1")
        self.t_start, self.t_end, self.alpha, self.beta = float(t_start), float(t_end), float(alpha), float(beta)
        self.form, self.ignore_index = form, int(ignore_index)
        self.register_buffer("t", torch.tensor(self.t_start, dtype=torch.float64))
        self.register_buffer("momentum", torch.tensor(0.0, dtype=torch.float64))
        self.register_buffer("previous_loss", torch.tensor(float("nan"), dtype=torch.float64))

    def _mask(self, batch: KDBatch) -> Tensor | None:
        labels = batch.labels
        if labels is None or labels.shape != batch.student.shape[:-1]:
            return None
        return (labels != self.ignore_index).to(batch.student.dtype)

    def forward(self, batch: KDBatch) -> Tensor:
        batch.need("student", "teacher", loss=NAME)
        check_same_shape(batch.student, batch.teacher, loss=NAME)
        loss = taid_loss(batch.student, batch.teacher, float(self.t), self._mask(batch), self.form)
        if self.training:
            self._update(float(loss.detach()), batch.step, batch.total_steps)
        return loss

    def _update(self, loss: float, step: int, total_steps: int) -> None:
        previous = float(self.previous_loss)
        if not math.isnan(previous):
            t, momentum = taid_update(float(self.t), float(self.momentum), previous, loss, step, total_steps,
                                      t_start=self.t_start, t_end=self.t_end, alpha=self.alpha, beta=self.beta)
            self.t.fill_(t)
            self.momentum.fill_(momentum)
        self.previous_loss.fill_(loss)
