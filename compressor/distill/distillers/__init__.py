"""Distillers: one small module per knowledge-distillation method."""
from compressor.distill.distillers.afkd import AFKDDistiller, AFKDLoss, AFKDWeights
from compressor.distill.distillers.feature_affinity import (
    AffinityKDWeights,
    FeatureAffinityDistiller,
)

__all__ = ["AFKDDistiller", "AFKDLoss", "AFKDWeights", "AffinityKDWeights", "FeatureAffinityDistiller"]
