"""ND loss (Wang et al., arXiv 2305.17007, "feature norm and direction"): align the student's embedding
with the teacher's class mean, and grow its norm to the teacher's.

``L = mean_i [1 - <s_i, e_{y_i}> / max(|s_i|, |t_i|)]`` with ``e_k`` the unit vector of the teacher's mean
embedding of class ``k`` (``DirectNormLoss`` of the reference code, vectorised). Class means are computed once
from teacher embeddings of the training set with :meth:`NormDirection.fit_class_means` (kept as a buffer;
the reference rounds them to 4 decimals, this does not). Embeddings are the penultimate features: name their
modules in ``layers`` (one pair), or leave ``layers`` empty when the models' primary outputs are embeddings.
When widths differ, ``prepare`` builds the reference projector on the student side (BN1d, Dropout 0.5,
Linear). Reference recipe "KD++": CE + KD (T=4) + lambda * ND with lambda 0.5 .. 2.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from compressor.distill.losses.zoo._pairs import embedding_pair, parse_layers, paths_of
from compressor.distill.losses.zoo.base import (
    KDBatch,
    KDInputError,
    KDLoss,
    register_loss,
)

NAME = "nd"


def nd_loss(student: Tensor, teacher: Tensor, labels: Tensor, class_means: Tensor) -> Tensor:
    """``mean_i [1 - <s_i, e_{y_i}> / max(|s_i|, |t_i|)]`` for N x D embeddings and C x D class means."""
    directions = F.normalize(class_means.detach()[labels], dim=-1)
    projection = (student * directions).sum(dim=-1)
    scale = torch.maximum(student.norm(dim=-1), teacher.detach().norm(dim=-1)).clamp_min(1e-12)
    return (1 - projection / scale).mean()


def class_means(embeddings: Tensor, labels: Tensor, num_classes: int | None = None) -> Tensor:
    """C x D mean embedding of each class (zero for a class absent from ``labels``)."""
    num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
    flat = embeddings.detach().flatten(1)
    sums = flat.new_zeros(num_classes, flat.shape[1]).index_add_(0, labels, flat)
    counts = torch.bincount(labels, minlength=num_classes).clamp_min(1).to(flat.dtype)
    return sums / counts[:, None]


def make_projector(student_dim: int, teacher_dim: int) -> nn.Module:
    """The reference's projector from student to teacher width: BN1d, Dropout(0.5), Linear."""
    return nn.Sequential(nn.BatchNorm1d(student_dim), nn.Dropout(0.5), nn.Linear(student_dim, teacher_dim))


@register_loss(NAME, description="ND: student embedding along the teacher's class-mean direction, norm >= teacher's",
               needs=("embeddings", "labels", "class means"), reference="arXiv 2305.17007")
class NormDirection(KDLoss):
    """ND on embeddings (``layers``' pair, or ``batch.student`` / ``batch.teacher``) and ``batch.labels``."""

    def __init__(self, *, layers: Sequence[str | Sequence[str]] | None = None) -> None:
        super().__init__()
        self.pairs = parse_layers(layers, loss=NAME, required=False)
        if len(self.pairs) > 1:
            raise KDInputError(f"loss '{NAME}' takes one embedding pair, got {len(self.pairs)}")
        self.projector: nn.Module = nn.Identity()
        self.register_buffer("class_means", None)

    def feature_paths(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return paths_of(self.pairs)

    def fit_class_means(self, teacher_embeddings: Tensor, labels: Tensor, num_classes: int | None = None) -> Tensor:
        """Compute and keep the teacher's class means (call once with the training set's embeddings)."""
        self.class_means = class_means(teacher_embeddings, labels, num_classes)
        return self.class_means

    def embeddings(self, batch: KDBatch) -> tuple[Tensor, Tensor]:
        """The (student, teacher) N x D embeddings this loss reads."""
        return embedding_pair(batch, self.pairs, loss=NAME)

    def prepare(self, batch: KDBatch) -> None:
        """Build the projector when student and teacher widths differ."""
        student, teacher = self.embeddings(batch)
        if isinstance(self.projector, nn.Identity) and student.shape[1] != teacher.shape[1]:
            self.projector = make_projector(student.shape[1], teacher.shape[1]).to(student.device, student.dtype)

    def forward(self, batch: KDBatch) -> Tensor:
        batch.need("labels", loss=NAME)
        if self.class_means is None:
            raise KDInputError(f"loss '{NAME}' needs class means: call fit_class_means(teacher_embeddings, labels)")
        student, teacher = self.embeddings(batch)
        student = self.projector(student)
        if student.shape[1] != teacher.shape[1] or teacher.shape[1] != self.class_means.shape[1]:
            raise KDInputError(f"loss '{NAME}': student {student.shape[1]}, teacher {teacher.shape[1]} and class "
                               f"means {self.class_means.shape[1]} widths differ (call prepare(first_batch))")
        return nd_loss(student, teacher, batch.labels, self.class_means)
