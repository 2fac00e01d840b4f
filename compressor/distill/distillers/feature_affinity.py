"""DSCLoRA-style distillation: reconstruction L1 + output L1 to the teacher + spatial-affinity KD on features."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn

from compressor.distill.hooks import FeatureHooks
from compressor.distill.losses import SpatialAffinityLoss


@dataclass(frozen=True)
class AffinityKDWeights:
    """``total = reconstruction * L1(S, HR) + output * L1(S, T) + affinity * sum_l L1(A_S^l, A_T^l)``."""

    reconstruction: float = 1.0
    output: float = 0.5
    affinity: float = 10.0

    @property
    def uses_teacher(self) -> bool:
        return self.output > 0 or self.affinity > 0


class FeatureAffinityDistiller(nn.Module):
    """Wraps a student and a frozen teacher; ``forward(lr, hr)`` returns ``(loss, parts)``.

    ``pairs`` lists ``(student_path, teacher_path)`` module paths whose outputs are compared by affinity.
    With every teacher weight at zero this is plain L1 training (the no-KD baseline), and the teacher
    is never run.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module | None, pairs: Sequence[tuple[str, str]],
                 weights: AffinityKDWeights, affinity: SpatialAffinityLoss | None = None) -> None:
        super().__init__()
        self.student, self.weights = student, weights
        self.teacher = teacher.eval().requires_grad_(False) if teacher is not None else None
        self.pairs = tuple(pairs)
        self.affinity = affinity or SpatialAffinityLoss()
        self.l1 = nn.L1Loss()

    def forward(self, lr: Tensor, hr: Tensor) -> tuple[Tensor, dict[str, float]]:
        w = self.weights
        if not w.uses_teacher or self.teacher is None:
            sr = self.student(lr)
            loss = self.l1(sr, hr)
            return w.reconstruction * loss, {"rec": loss.item()}
        with FeatureHooks(self.student, [s for s, _ in self.pairs]) as s_hooks, \
                FeatureHooks(self.teacher, [t for _, t in self.pairs]) as t_hooks:
            sr = self.student(lr)
            with torch.no_grad():
                target = self.teacher(lr)
            s_feats, t_feats = s_hooks.features(), t_hooks.features()
            rec, out = self.l1(sr, hr), self.l1(sr, target)
            aff = self.affinity(s_feats, t_feats) if self.pairs and w.affinity > 0 else sr.new_zeros(())
        total = w.reconstruction * rec + w.output * out + w.affinity * aff
        return total, {"rec": rec.item(), "out": out.item(), "aff": aff.item()}
