"""LEAF-style embedding alignment (Vujanic & Rueckstiess, arXiv 2509.12539): the student's text embedding,
projected to the teacher's width and L2-normalised, regresses the teacher's embedding of the same text.

``L = mean_i |y_i - y^_i|^2`` (squared L2 per sample, mean over the batch; ``d`` times ``nn.MSELoss``;
``2 - 2 cos`` for unit vectors). Embeddings are ``batch.student`` / ``batch.teacher`` (encoders' outputs)
or one hooked pair named in ``layers`` (flattened to N x D). No labels, no negatives. When widths differ,
``prepare`` builds the student-side Linear projection (not exported). ``normalize: false`` compares raw
vectors.
"""
from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from compressor.distill.losses.zoo._pairs import embedding_pair, parse_layers, paths_of
from compressor.distill.losses.zoo.base import (
    KDBatch,
    KDInputError,
    KDLoss,
    register_loss,
)

NAME = "leaf"


def leaf_loss(student: Tensor, teacher: Tensor, normalize: bool = True) -> Tensor:
    """``mean_i |y_i - y^_i|^2`` of N x D embeddings, both L2-normalised first when ``normalize``."""
    teacher = teacher.detach()
    if normalize:
        student, teacher = F.normalize(student, dim=-1), F.normalize(teacher, dim=-1)
    return (student - teacher).pow(2).sum(dim=-1).mean()


@register_loss(NAME, description="LEAF: squared L2 between (projected, normalised) student and teacher embeddings",
               needs=("embeddings",), reference="arXiv 2509.12539")
class LeafAlignment(KDLoss):
    """Embedding alignment of ``batch.student`` / ``batch.teacher`` (or one ``layers`` pair)."""

    def __init__(self, *, layers: Sequence[str | Sequence[str]] | None = None, normalize: bool = True) -> None:
        super().__init__()
        self.pairs = parse_layers(layers, loss=NAME, required=False)
        if len(self.pairs) > 1:
            raise KDInputError(f"loss '{NAME}' takes one embedding pair, got {len(self.pairs)}")
        self.normalize = bool(normalize)
        self.projection: nn.Module = nn.Identity()

    def feature_paths(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return paths_of(self.pairs)

    def embeddings(self, batch: KDBatch) -> tuple[Tensor, Tensor]:
        """The (student, teacher) N x D embeddings this loss reads."""
        return embedding_pair(batch, self.pairs, loss=NAME)

    def prepare(self, batch: KDBatch) -> None:
        """Build the Linear projection when student and teacher widths differ."""
        student, teacher = self.embeddings(batch)
        if isinstance(self.projection, nn.Identity) and student.shape[1] != teacher.shape[1]:
            self.projection = nn.Linear(student.shape[1], teacher.shape[1]).to(student.device, student.dtype)

    def forward(self, batch: KDBatch) -> Tensor:
        student, teacher = self.embeddings(batch)
        student = self.projection(student)
        if student.shape != teacher.shape:
            raise KDInputError(f"loss '{NAME}': embeddings {tuple(student.shape)} and {tuple(teacher.shape)} "
                               f"differ (call prepare(first_batch) to build the projection)")
        return leaf_loss(student, teacher, self.normalize)
