"""Spatial affinity (FAKD, ICIP 2020; DSCLoRA's L_AD) as a registered loss: a thin wrapper around
:class:`compressor.distill.losses.affinity.SpatialAffinityLoss` (same numbers), on the ``layers`` pairs.

Sum over pairs of ``mean |A_S - A_T|`` where ``A`` is the position-by-position cosine similarity of a
B x C x H x W map (channel counts may differ, H x W must match). Maps with more than ``max_positions``
positions are reduced first (``pool`` or ``sample``). Reference weight 10 for images in 0..255 (about
0.0392 for 0..1).
"""
from __future__ import annotations

from typing import Sequence

from torch import Tensor

from compressor.distill.losses.affinity import FeatureShapeError, SpatialAffinityLoss
from compressor.distill.losses.zoo._pairs import paired_features, parse_layers, paths_of
from compressor.distill.losses.zoo.base import (
    KDBatch,
    KDInputError,
    KDLoss,
    register_loss,
)

NAME = "affinity"


def affinity_loss(student: Tensor, teacher: Tensor, eps: float = 1e-7) -> Tensor:
    """``mean |A(student) - A(teacher)|`` of one pair of maps (no position reduction)."""
    return SpatialAffinityLoss(max_positions=None, eps=eps)(student, teacher)


@register_loss(NAME, description="Spatial affinity (FAKD): L1 between position-by-position cosine affinities",
               needs=("features",), reference="FAKD, ICIP 2020")
class SpatialAffinity(KDLoss):
    """Sum over ``layers`` pairs of the affinity L1."""

    def __init__(self, *, layers: Sequence[str | Sequence[str]], max_positions: int | None = 4096,
                 reduction: str = "pool", eps: float = 1e-7) -> None:
        super().__init__()
        self.pairs = parse_layers(layers, loss=NAME)
        try:
            self.loss = SpatialAffinityLoss(max_positions=max_positions, reduction=reduction, eps=eps)
        except ValueError as exc:
            raise KDInputError(f"loss '{NAME}': {exc}") from None

    def feature_paths(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return paths_of(self.pairs)

    def forward(self, batch: KDBatch) -> Tensor:
        features = paired_features(batch, self.pairs, loss=NAME)
        try:
            return self.loss([s for s, _ in features], [t for _, t in features])
        except FeatureShapeError as exc:
            raise KDInputError(str(exc)) from None
