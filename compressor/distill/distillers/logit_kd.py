"""LSF-IDM distillation: cross-entropy on labels + temperature-scaled KL to the teacher's distribution, and,
as an option, fusion of the teacher's semantic feature (hooked by module path) into the student's.

``total = label * CE(s, y) + soft * T^2 KL(t^T || s^T) + feature * MSE(W f_s, f_t)``. The teacher is frozen,
so its logits and features may be computed once (:func:`teacher_outputs`) and passed in with each batch.
With ``soft`` and ``feature`` at zero this is plain cross-entropy training: the no-KD baseline.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch
from torch import Tensor, nn

from compressor.distill.distributed import map_sharded
from compressor.distill.hooks import FeatureHooks
from compressor.distill.losses.kd import FeatureFusionLoss, SoftTargetKLLoss


@dataclass(frozen=True)
class LogitKDWeights:
    """Weights of the three terms (LSF-IDM's ``alpha`` is ``label``; ``soft = 1 - alpha``)."""

    label: float = 0.5
    soft: float = 0.5
    feature: float = 0.0

    @property
    def uses_teacher(self) -> bool:
        return self.soft > 0 or self.feature > 0


@dataclass(frozen=True)
class FeaturePair:
    """Which student module's output is fused with which teacher module's output."""

    student: str = "features"
    teacher: str = "pooler"


class LogitKDistiller(nn.Module):
    """``forward(tokens, labels, teacher_logits=None, teacher_features=None) -> (loss, parts)``.

    Teacher outputs not given are computed with ``teacher`` (frozen, eval mode).
    """

    def __init__(self, student: nn.Module, weights: LogitKDWeights, *, teacher: nn.Module | None = None,
                 temperature: float = 2.0, pair: FeaturePair = FeaturePair(),
                 fusion: FeatureFusionLoss | None = None) -> None:
        super().__init__()
        self.student, self.weights, self.pair = student, weights, pair
        self.teacher = teacher.eval().requires_grad_(False) if teacher is not None else None
        self.ce, self.kd = nn.CrossEntropyLoss(), SoftTargetKLLoss(temperature)
        self.fusion = fusion if weights.feature > 0 else None
        if weights.feature > 0 and fusion is None:
            raise ValueError("feature weight > 0 needs a FeatureFusionLoss")

    def forward(self, tokens: Tensor, labels: Tensor, teacher_logits: Tensor | None = None,
                teacher_features: Tensor | None = None) -> tuple[Tensor, dict[str, float]]:
        w = self.weights
        if not w.uses_teacher:
            ce = self.ce(self.student(tokens), labels)
            return w.label * ce, {"ce": ce.item()}
        if teacher_logits is None or (self.fusion is not None and teacher_features is None):
            teacher_logits, teacher_features = self._teacher(tokens)
        paths = [self.pair.student] if self.fusion is not None else []
        with FeatureHooks(self.student, paths) as hooks:
            logits = self.student(tokens)
            features = hooks.features()
        ce, kd = self.ce(logits, labels), self.kd(logits, teacher_logits)
        fused = self.fusion(features[0], teacher_features) if self.fusion is not None else logits.new_zeros(())
        total = w.label * ce + w.soft * kd + w.feature * fused
        return total, {"ce": ce.item(), "kd": kd.item(), "feature": fused.item()}

    @torch.no_grad()
    def _teacher(self, tokens: Tensor) -> tuple[Tensor, Tensor | None]:
        if self.teacher is None:
            raise ValueError("no teacher outputs given and no teacher to compute them")
        paths = [self.pair.teacher] if self.fusion is not None else []
        with FeatureHooks(self.teacher, paths) as hooks:
            logits = self.teacher(tokens)
            features = hooks.features()
        return logits, (features[0] if features else None)


@torch.no_grad()
def teacher_outputs(teacher: nn.Module, batches: Iterable[np.ndarray], *,
                    feature_path: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """The frozen teacher's logits (and the output of ``feature_path``) over ``batches`` of token arrays, computed
    on the device the teacher's weights are on and returned as CPU arrays."""
    teacher = teacher.eval()
    device = next((p.device for p in teacher.parameters()), torch.device("cpu"))
    with FeatureHooks(teacher, [feature_path] if feature_path else []) as hooks:
        def run(tokens: np.ndarray):
            logits = teacher(torch.from_numpy(tokens).to(device)).cpu().numpy()
            return logits, (hooks.features()[0].cpu().numpy() if feature_path else None)

        parts = map_sharded(run, batches)  # each training process computes its share; every one gets all
    return (np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]) if feature_path else None)
