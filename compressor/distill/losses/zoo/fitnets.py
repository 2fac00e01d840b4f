"""FitNets hints (Romero et al., ICLR 2015, arXiv 1412.6550) on any layer pairs chosen by module path.

Each pair's student feature goes through a learned regressor ``r`` (a 1x1 conv for B x C x H x W maps, a
linear map on the last axis for B x D or B x L x D tokens) onto the teacher's width, then
``mean((r(f_s) - f_t)^2)`` (element mean, as mdistiller's one-stage recipe: 1 * CE + 100 * hint, stage-2
output post-ReLU). Pairs are summed. A student map of another spatial size is average-pooled to the
teacher's. The regressors are created from the first batch's shapes by :meth:`FitNetsHint.prepare`, which
the trainer calls once before it builds the optimiser; they live on the student side and are not exported.
``adapter: identity`` skips the regressor (student and teacher features must then have the same shape).
"""
from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from compressor.distill.losses.zoo._pairs import (
    check_same_shape,
    paired_features,
    parse_layers,
    paths_of,
)
from compressor.distill.losses.zoo.base import (
    KDBatch,
    KDInputError,
    KDLoss,
    register_loss,
)

NAME = "fitnets"
ADAPTERS = ("learned", "identity")


def hint_mse(student_regressed: Tensor, teacher: Tensor) -> Tensor:
    """``mean((r(f_s) - f_t)^2)`` over every element (the regressor already applied)."""
    return F.mse_loss(student_regressed, teacher.detach())


def make_regressor(student: Tensor, teacher: Tensor) -> nn.Module:
    """A 1x1 conv (4-D maps) or a linear map on the last axis (2-D/3-D tokens) from student to teacher width."""
    if student.dim() == 4 and teacher.dim() == 4:
        layer: nn.Module = nn.Conv2d(student.shape[1], teacher.shape[1], kernel_size=1)
    elif student.dim() in (2, 3) and teacher.dim() == student.dim():
        layer = nn.Linear(student.shape[-1], teacher.shape[-1])
    else:
        raise KDInputError(f"loss '{NAME}' pairs 4-D maps or 2-D/3-D tokens of equal rank, got "
                           f"{tuple(student.shape)} and {tuple(teacher.shape)}")
    return layer.to(device=student.device, dtype=student.dtype)


def _match_spatial(student: Tensor, teacher: Tensor) -> Tensor:
    if student.dim() == 4 and student.shape[-2:] != teacher.shape[-2:]:
        return F.adaptive_avg_pool2d(student, teacher.shape[-2:])
    return student


@register_loss(NAME, description="FitNets hints: MSE between regressed student and teacher features per layer pair",
               needs=("features",), reference="arXiv 1412.6550")
class FitNetsHint(KDLoss):
    """Sum over ``layers`` pairs of ``mean((r(f_s) - f_t)^2)``; call :meth:`prepare` once before training."""

    def __init__(self, *, layers: Sequence[str | Sequence[str]], adapter: str = "learned") -> None:
        super().__init__()
        if adapter not in ADAPTERS:
            raise KDInputError(f"loss '{NAME}': adapter must be one of {', '.join(ADAPTERS)}, got {adapter!r}")
        self.pairs = parse_layers(layers, loss=NAME)
        self.adapter = adapter
        self.regressors = nn.ModuleList()

    def feature_paths(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return paths_of(self.pairs)

    def prepare(self, batch: KDBatch) -> None:
        """Create one regressor per pair from ``batch``'s feature shapes (no-op once built or for identity)."""
        if self.adapter == "identity" or len(self.regressors):
            return
        for student, teacher in paired_features(batch, self.pairs, loss=NAME):
            self.regressors.append(make_regressor(student, teacher))

    def forward(self, batch: KDBatch) -> Tensor:
        features = paired_features(batch, self.pairs, loss=NAME)
        if self.adapter == "learned" and not len(self.regressors):
            raise KDInputError(f"loss '{NAME}': call prepare(first_batch) before building the optimiser, "
                               f"so its regressors are trained")
        total = None
        for index, (student, teacher) in enumerate(features):
            if self.adapter == "learned":
                student = self.regressors[index](student)
            student = _match_spatial(student, teacher)
            check_same_shape(student, teacher, loss=NAME, what="features")
            term = hint_mse(student, teacher)
            total = term if total is None else total + term
        return total
