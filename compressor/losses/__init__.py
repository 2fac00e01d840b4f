"""Distillation losses: plain modules ``forward(student_out, teacher_out)``; weighting lives elsewhere."""
from compressor.losses.affinity import FeatureShapeError, PositionReduction, SpatialAffinityLoss, spatial_affinity

__all__ = ["FeatureShapeError", "PositionReduction", "SpatialAffinityLoss", "spatial_affinity"]
