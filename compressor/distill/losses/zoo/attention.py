"""Attention transfer (Zagoruyko & Komodakis, ICLR 2017, arXiv 1612.03928) on any layer pairs.

The attention map of a B x C x H x W feature is the channel mean of ``f^2``, flattened and L2-normalised per
sample; the loss of a pair is the mean squared difference of the maps over B * H*W (the reference code,
not the paper's un-squared norm), summed over pairs. Channel counts may differ; maps of different spatial
size are average-pooled to the smaller (as mdistiller). Reference weight: beta = 1000 (set it as the
recipe weight).
"""
from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor

from compressor.distill.losses.zoo._pairs import paired_features, parse_layers, paths_of
from compressor.distill.losses.zoo.base import (
    KDBatch,
    KDInputError,
    KDLoss,
    register_loss,
)

NAME = "attention"


def attention_map(features: Tensor, power: float = 2.0) -> Tensor:
    """B x (H*W): per-sample L2-normalised channel mean of ``|f|^power``."""
    return F.normalize(features.abs().pow(power).mean(dim=1).flatten(1), dim=1)


def attention_transfer(student: Tensor, teacher: Tensor, power: float = 2.0) -> Tensor:
    """``mean((Q_s - Q_t)^2)`` of the two attention maps, pooled to the smaller spatial size."""
    if student.dim() != 4 or teacher.dim() != 4 or student.shape[0] != teacher.shape[0]:
        raise KDInputError(f"loss '{NAME}' needs B x C x H x W maps of one batch, got {tuple(student.shape)} "
                           f"and {tuple(teacher.shape)}")
    teacher = teacher.detach()
    if student.shape[-2:] != teacher.shape[-2:]:
        size = (min(student.shape[-2], teacher.shape[-2]), min(student.shape[-1], teacher.shape[-1]))
        student, teacher = F.adaptive_avg_pool2d(student, size), F.adaptive_avg_pool2d(teacher, size)
    return (attention_map(student, power) - attention_map(teacher, power)).pow(2).mean()


@register_loss(NAME, description="Attention transfer: MSE between normalised spatial attention maps per layer pair",
               needs=("features",), reference="arXiv 1612.03928")
class AttentionTransfer(KDLoss):
    """Sum over ``layers`` pairs of the attention-map MSE."""

    def __init__(self, *, layers: Sequence[str | Sequence[str]], power: float = 2.0) -> None:
        super().__init__()
        self.pairs = parse_layers(layers, loss=NAME)
        self.power = float(power)

    def feature_paths(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return paths_of(self.pairs)

    def forward(self, batch: KDBatch) -> Tensor:
        terms = [attention_transfer(s, t, self.power) for s, t in paired_features(batch, self.pairs, loss=NAME)]
        return sum(terms[1:], terms[0])
