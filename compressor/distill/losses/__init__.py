"""Distillation losses: plain modules ``forward(student_out, teacher_out)``; weighting lives elsewhere."""
from compressor.distill.losses.affinity import (
                                        FeatureShapeError,
                                        PositionReduction,
                                        SpatialAffinityLoss,
                                        spatial_affinity,
)
from compressor.distill.losses.orr import CoxBlockMasking, OrrLoss, StopGradient
from compressor.distill.losses.tracking import (
                                        FocalLoss,
                                        GIoULoss,
                                        TrackingLoss,
                                        TrackingLossWeights,
                                        center_heatmap,
                                        generalized_iou,
)

__all__ = ["CoxBlockMasking", "FeatureShapeError", "FocalLoss", "GIoULoss", "OrrLoss", "PositionReduction",
           "SpatialAffinityLoss", "StopGradient", "TrackingLoss", "TrackingLossWeights", "center_heatmap",
           "generalized_iou", "spatial_affinity"]
