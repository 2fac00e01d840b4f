"""Spatial feature-affinity distillation (FAKD, ICIP 2020; the L_AD term of DSCLoRA).

For a feature map ``F`` (B x C x H x W), each position's channel vector is L2-normalised and the
N x N matrix of cosine similarities between positions (N = H*W) is the "affinity". The loss of a
pair is the mean absolute difference between the student's and the teacher's affinities, summed
over pairs. Affinities are independent of C, so student and teacher widths may differ.

An affinity costs ``B * N**2`` floats (64 MiB per image for a 64x64 map), so maps with more than
``max_positions`` positions are reduced first: adaptive average pooling (default) or a random
subset of positions (the same subset for student and teacher).
"""
from __future__ import annotations

import enum
import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from compressor.core.errors import CompressError
from compressor.distill.losses.precision import float32_loss


class FeatureShapeError(CompressError, ValueError):
    """Paired student and teacher features that cannot be compared (count, batch or spatial size)."""


class PositionReduction(str, enum.Enum):
    """How to bound the number of positions of a large feature map."""

    POOL = "pool"      # adaptive average pooling to at most max_positions cells, aspect kept
    SAMPLE = "sample"  # a random subset of max_positions positions


def spatial_affinity(features: Tensor, eps: float = 1e-7) -> Tensor:
    """The B x N x N cosine similarity between every pair of positions of a B x C x H x W map."""
    flat = features.flatten(2)
    flat = flat / (torch.linalg.vector_norm(flat, dim=1, keepdim=True) + eps)
    return flat.transpose(1, 2) @ flat


def pooled_size(height: int, width: int, max_positions: int) -> tuple[int, int]:
    """The largest (h, w) with the map's aspect ratio and h * w <= ``max_positions``."""
    if height * width <= max_positions:
        return height, width
    ratio = math.sqrt(max_positions / (height * width))
    h, w = max(1, int(height * ratio)), max(1, int(width * ratio))
    while h * w > max_positions:  # guards the float rounding of the ratio
        h, w = (h - 1, w) if h >= w and h > 1 else (h, max(1, w - 1))
    return h, w


class SpatialAffinityLoss(nn.Module):
    """Sum over paired maps of ``mean |A(student) - A(teacher)|``; the teacher gets no gradient.

    >>> loss = SpatialAffinityLoss(max_positions=256)
    >>> s, t = [torch.rand(2, 8, 32, 32)], [torch.rand(2, 16, 32, 32)]
    >>> loss(s, t).shape
    torch.Size([])
    """

    def __init__(self, *, max_positions: int | None = 4096,
                 reduction: PositionReduction | str = PositionReduction.POOL,
                 generator: torch.Generator | None = None, eps: float = 1e-7) -> None:
        super().__init__()
        if max_positions is not None and max_positions < 1:
            raise ValueError(f"max_positions must be >= 1 or None, got {max_positions}")
        self.max_positions = max_positions
        self.reduction = PositionReduction(reduction)
        self.generator = generator
        self.eps = eps

    @float32_loss
    def forward(self, student_feats: Sequence[Tensor] | Tensor, teacher_feats: Sequence[Tensor] | Tensor) -> Tensor:
        students = [student_feats] if isinstance(student_feats, Tensor) else list(student_feats)
        teachers = [teacher_feats] if isinstance(teacher_feats, Tensor) else list(teacher_feats)
        if len(students) != len(teachers) or not students:
            raise FeatureShapeError(f"affinity loss needs equal, non-zero numbers of student and teacher "
                                    f"features, got {len(students)} and {len(teachers)}")
        return sum(self._pair_loss(s, t.detach()) for s, t in zip(students, teachers))

    def _pair_loss(self, student: Tensor, teacher: Tensor) -> Tensor:
        _check_pair(student, teacher)
        height, width = student.shape[-2:]
        if self.max_positions is not None and height * width > self.max_positions:
            student, teacher = self._reduce(student, teacher)
        return F.l1_loss(spatial_affinity(student, self.eps), spatial_affinity(teacher, self.eps))

    def _reduce(self, student: Tensor, teacher: Tensor) -> tuple[Tensor, Tensor]:
        height, width = student.shape[-2:]
        if self.reduction is PositionReduction.POOL:
            size = pooled_size(height, width, self.max_positions)
            return F.adaptive_avg_pool2d(student, size), F.adaptive_avg_pool2d(teacher, size)
        draw_on = self.generator.device if self.generator is not None else torch.device("cpu")
        index = torch.randperm(height * width, generator=self.generator, device=draw_on)[: self.max_positions]
        index = index.to(student.device)
        # As a N x 1 "map", so spatial_affinity applies unchanged; both sides share the positions.
        return tuple(f.flatten(2).index_select(2, index).unsqueeze(-1) for f in (student, teacher))


def _check_pair(student: Tensor, teacher: Tensor) -> None:
    if student.dim() != 4 or teacher.dim() != 4:
        raise FeatureShapeError(f"affinity loss needs B x C x H x W maps, got {tuple(student.shape)} "
                                f"and {tuple(teacher.shape)}")
    if student.shape[0] != teacher.shape[0] or student.shape[-2:] != teacher.shape[-2:]:
        raise FeatureShapeError(f"student map {tuple(student.shape)} and teacher map {tuple(teacher.shape)} "
                                f"differ in batch or spatial size")
