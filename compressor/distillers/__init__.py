"""Distillers: one small module per knowledge-distillation method."""
from compressor.distillers.feature_affinity import AffinityKDWeights, FeatureAffinityDistiller

__all__ = ["AffinityKDWeights", "FeatureAffinityDistiller"]
