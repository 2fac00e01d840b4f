"""AFKD (ORTrack-D, arXiv 2504.09228) as a registered loss: a thin wrapper around
:class:`compressor.distill.distillers.afkd.AFKDLoss` (same numbers) on the ``layers`` pairs.

``L = mean_i c_i * mean((F_S[i] - F_T[i])^2)`` with ``c_i = max(0, w * (tau0 + rho * ((1 - GIoU_i) -
mean(1 - GIoU))))``: samples the student finds harder weigh more. The GIoU of the student's box against the
truth comes from ``batch.extras["giou"]`` (a B-vector; detached inside). Defaults are the released values.
"""
from __future__ import annotations

from typing import Sequence

from torch import Tensor

from compressor.distill.distillers.afkd import AFKDLoss, AFKDWeights
from compressor.distill.losses.affinity import FeatureShapeError
from compressor.distill.losses.zoo._pairs import paired_features, parse_layers, paths_of
from compressor.distill.losses.zoo.base import (
    KDBatch,
    KDInputError,
    KDLoss,
    register_loss,
)

NAME = "afkd"
GIOU_KEY = "giou"


def afkd_loss(student: Tensor, teacher: Tensor, giou: Tensor, weight: float = 2e-5, tau0: float = 10.0,
              rho: float = 10.0) -> Tensor:
    """AFKD of one pair of equal-shape features (B x ...) with the B student GIoUs."""
    return AFKDLoss(AFKDWeights(weight, tau0, rho))(student, teacher, giou)


@register_loss(NAME, description="AFKD: feature MSE weighted per sample by the student's difficulty (1 - GIoU)",
               needs=("features", "giou"), reference="arXiv 2504.09228")
class AdaptiveFeatureKD(KDLoss):
    """AFKD on the ``layers`` pairs and ``batch.extras['giou']``."""

    def __init__(self, *, layers: Sequence[str | Sequence[str]], weight: float = 2e-5, tau0: float = 10.0,
                 rho: float = 10.0) -> None:
        super().__init__()
        self.pairs = parse_layers(layers, loss=NAME)
        self.loss = AFKDLoss(AFKDWeights(weight, tau0, rho))

    def feature_paths(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return paths_of(self.pairs)

    def forward(self, batch: KDBatch) -> Tensor:
        if GIOU_KEY not in batch.extras:
            raise KDInputError(f"loss '{NAME}' needs extras['{GIOU_KEY}'] (the student's GIoU per sample)")
        features = paired_features(batch, self.pairs, loss=NAME)
        try:
            return self.loss([s for s, _ in features], [t for _, t in features], batch.extras[GIOU_KEY])
        except FeatureShapeError as exc:
            raise KDInputError(str(exc)) from None
