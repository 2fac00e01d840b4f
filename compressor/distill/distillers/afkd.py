"""AFKD (adaptive feature-based knowledge distillation, ORTrack-D): feature mimicking weighted by how hard
each sample is for the student.

For paired features ``F_S`` and ``F_T`` (ORTrack: the final post-LayerNorm tokens, template and search):

    d_i = mean((F_S[i] - F_T[i])**2)                     per-sample distance, differentiable in F_S
    c_i = w * (tau0 + rho * ((1 - GIoU_i) - mean_batch(1 - GIoU)))   GIoU of the student's box vs the truth
    L_afkd = mean_i(max(c_i, 0) * d_i)

Samples the student finds harder than the batch average weigh more. Defaults are the released values
(w 2e-5, tau0 10, rho 10). Two deliberate differences from the released code: the per-sample distances
are stacked with their graph (the release builds them with ``torch.tensor([...])``, which detaches them,
so the student got no gradient from this term), and the GIoU inside the weight is detached (a weight, not
an objective); weights are floored at 0 so a very easy sample is never pushed away from the teacher.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import torch
from torch import Tensor, nn

from compressor.distill.hooks import FeatureHooks
from compressor.distill.losses.affinity import FeatureShapeError
from compressor.distill.losses.precision import float32_loss


@dataclass(frozen=True)
class AFKDWeights:
    """``c_i = weight * (tau0 + rho * (difficulty_i - mean difficulty))``, difficulty = 1 - GIoU."""

    weight: float = 2e-5
    tau0: float = 10.0
    rho: float = 10.0


class AFKDLoss(nn.Module):
    """``forward(student_feats, teacher_feats, giou) ->`` the adaptive feature loss (teacher gets no gradient).

    >>> loss = AFKDLoss(AFKDWeights(weight=1.0))
    >>> s, t = torch.rand(4, 10, 8, requires_grad=True), torch.rand(4, 10, 8)
    >>> loss([s], [t], torch.tensor([0.9, 0.5, 0.1, -0.3])).backward(); bool(s.grad.abs().sum() > 0)
    True
    """

    def __init__(self, weights: AFKDWeights = AFKDWeights()) -> None:
        super().__init__()
        self.weights = weights

    def sample_weights(self, giou: Tensor) -> Tensor:
        """Per-sample ``c_i`` (detached), floored at 0."""
        w = self.weights
        difficulty = (1 - giou).detach().float()
        return (w.weight * (w.tau0 + w.rho * (difficulty - difficulty.mean()))).clamp(min=0)

    @float32_loss
    def forward(self, student_feats: Sequence[Tensor] | Tensor, teacher_feats: Sequence[Tensor] | Tensor,
                giou: Tensor) -> Tensor:
        students = [student_feats] if isinstance(student_feats, Tensor) else list(student_feats)
        teachers = [teacher_feats] if isinstance(teacher_feats, Tensor) else list(teacher_feats)
        if len(students) != len(teachers) or not students:
            raise FeatureShapeError(f"AFKD needs equal, non-zero numbers of student and teacher features, "
                                    f"got {len(students)} and {len(teachers)}")
        c = self.sample_weights(giou)
        total = giou.new_zeros((), dtype=torch.float32)
        for s, t in zip(students, teachers):
            if s.shape != t.shape:
                raise FeatureShapeError(f"AFKD pairs features of equal shape, got {tuple(s.shape)} and "
                                        f"{tuple(t.shape)}")
            distance = (s - t.detach()).pow(2).flatten(1).mean(dim=1)  # B, keeps the graph (torch.stack-like)
            total = total + (c * distance).mean()
        return total


class TrackingObjective(Protocol):
    """What the distiller needs from the task's objective (``compressor.distill.tasks.tracking_train``)."""

    def task(self, model: nn.Module, template: Tensor, search: Tensor, boxes: Tensor): ...

    def orr(self, model: nn.Module, template: Tensor, search: Tensor, clean_tokens: Tensor): ...


class AFKDDistiller(nn.Module):
    """Student + frozen teacher: ``forward(template, search, boxes) -> (loss, parts)``.

    ``loss = task(student) + orr(student) + L_afkd(hooked student features, hooked teacher features)``;
    ``pairs`` lists ``(student_path, teacher_path)`` module paths (ORTrack: ``backbone.norm`` on both).
    The teacher runs in eval mode without masking and without gradient.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, objective: TrackingObjective,
                 pairs: Sequence[tuple[str, str]], loss: AFKDLoss) -> None:
        super().__init__()
        self.student, self.objective, self.kd = student, objective, loss
        self.teacher = teacher.eval().requires_grad_(False)
        self.pairs = tuple(pairs)

    def forward(self, template: Tensor, search: Tensor, boxes: Tensor) -> tuple[Tensor, dict[str, float]]:
        with torch.no_grad(), FeatureHooks(self.teacher, [t for _, t in self.pairs]) as t_hooks:
            self.teacher(template, search)
            teacher_feats = t_hooks.features()
        with FeatureHooks(self.student, [s for s, _ in self.pairs]) as s_hooks:
            result = self.objective.task(self.student, template, search, boxes)
            student_feats = s_hooks.features()  # the clean pass only: the masked pass runs below, unhooked
        kd = self.kd(student_feats, teacher_feats, result.giou)
        total, parts = result.loss + kd, {**result.parts, "afkd": kd.item()}
        orr = self.objective.orr(self.student, template, search, result.tokens)
        if orr is not None:
            total, parts["orr"] = total + orr[0], orr[1]
        return total, parts
