"""One-pass evaluation (OPE) of single-object trackers, as the UAV benchmarks report it (pytracking's analysis).

Per frame, with boxes ``(x, y, w, h)``: IoU, centre error in pixels, and centre error normalised by the
ground-truth size per axis. Over a set of frames:

- success AUC: mean over the 21 thresholds 0, 0.05, ..., 1 of the fraction of frames with IoU > threshold
  (so a perfect tracker scores 20/21, as in the OTB/UAV123 toolkits);
- precision@20: fraction of frames with centre error <= 20 px;
- normalised precision: fraction with normalised centre error <= 0.2.

Frames where the target is absent are skipped, and so is the first frame (it is the initialisation).
A sequence's metrics are over its frames; a dataset's are the mean over sequences. The occluded-frame
metrics pool every frame whose occluded fraction is at least the threshold, across sequences.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from compressor.core.errors import CompressError

SUCCESS_THRESHOLDS = np.linspace(0.0, 1.0, 21)
PRECISION_PIXELS = 20.0
NORM_PRECISION = 0.2


class TrackingMetricError(CompressError, ValueError):
    """Predictions and ground truth that cannot be compared."""


def iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-row IoU of N x 4 ``(x, y, w, h)`` boxes (0 for non-finite predictions)."""
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    x1, y1 = np.maximum(pred[:, 0], gt[:, 0]), np.maximum(pred[:, 1], gt[:, 1])
    x2 = np.minimum(pred[:, 0] + pred[:, 2], gt[:, 0] + gt[:, 2])
    y2 = np.minimum(pred[:, 1] + pred[:, 3], gt[:, 1] + gt[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = np.clip(pred[:, 2], 0, None) * np.clip(pred[:, 3], 0, None) + gt[:, 2] * gt[:, 3] - inter
    out = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
    return np.where(np.all(np.isfinite(pred), axis=1), out, 0.0)


def center_error(pred: np.ndarray, gt: np.ndarray, *, normalized: bool = False) -> np.ndarray:
    """Per-row distance between box centres, in pixels or (``normalized``) in units of the gt size per axis."""
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    delta = (pred[:, :2] + pred[:, 2:] / 2) - (gt[:, :2] + gt[:, 2:] / 2)
    if normalized:
        delta = delta / gt[:, 2:]
    out = np.sqrt((delta**2).sum(axis=1))
    return np.where(np.isfinite(out), out, np.inf)


def success_curve(ious: np.ndarray) -> np.ndarray:
    """Fraction of frames with IoU > t for each of the 21 thresholds."""
    ious = np.asarray(ious, np.float64)
    if ious.size == 0:
        return np.full(len(SUCCESS_THRESHOLDS), np.nan)
    return (ious[:, None] > SUCCESS_THRESHOLDS[None, :]).mean(axis=0)


def frame_metrics(ious: np.ndarray, errors: np.ndarray, norm_errors: np.ndarray) -> dict[str, float]:
    """AUC, precision@20 and normalised precision@0.2 of a set of frames (NaN for no frames)."""
    if len(ious) == 0:
        return {"auc": float("nan"), "precision": float("nan"), "norm_precision": float("nan")}
    return {"auc": float(success_curve(ious).mean()),
            "precision": float(np.mean(errors <= PRECISION_PIXELS)),
            "norm_precision": float(np.mean(norm_errors <= NORM_PRECISION))}


@dataclass
class SequenceResult:
    """Per-frame measures of one tracked sequence (evaluated frames only) and their occlusion."""

    name: str
    ious: np.ndarray
    errors: np.ndarray
    norm_errors: np.ndarray
    occlusion: np.ndarray

    def metrics(self) -> dict[str, float]:
        return frame_metrics(self.ious, self.errors, self.norm_errors)


def evaluate_sequence(name: str, pred: np.ndarray, gt: np.ndarray, *, absent: np.ndarray | None = None,
                      occlusion: np.ndarray | None = None) -> SequenceResult:
    """Compare N x 4 predictions with N x 4 ground truth (frame 0 and absent frames are skipped)."""
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    if pred.shape != gt.shape or pred.ndim != 2 or pred.shape[1] != 4:
        raise TrackingMetricError(f"{name}: predictions {pred.shape} and ground truth {gt.shape} must both be N x 4")
    valid = np.all(np.isfinite(gt), axis=1) & (np.nan_to_num(gt[:, 2]) > 0) & (np.nan_to_num(gt[:, 3]) > 0)
    if absent is not None:
        valid &= ~np.asarray(absent, bool)
    valid[0] = False
    occ = np.zeros(len(gt)) if occlusion is None else np.asarray(occlusion, np.float64)
    p, g = pred[valid], gt[valid]
    return SequenceResult(name, iou(p, g), center_error(p, g), center_error(p, g, normalized=True), occ[valid])


def summarize(results: Sequence[SequenceResult], *, occluded_threshold: float = 0.3) -> dict:
    """Dataset metrics (mean over sequences), occluded-frame metrics (pooled) and per-sequence metrics."""
    if not results:
        raise TrackingMetricError("no sequences to summarise")
    per_sequence = {r.name: r.metrics() for r in results}
    overall = {k: float(np.nanmean([m[k] for m in per_sequence.values()])) for k in ("auc", "precision",
                                                                                      "norm_precision")}
    occluded = [r.occlusion >= occluded_threshold for r in results]
    pooled = frame_metrics(*(np.concatenate([getattr(r, f)[m] for r, m in zip(results, occluded)])
                             for f in ("ious", "errors", "norm_errors")))
    return {**overall, **{f"{k}_occluded": v for k, v in pooled.items()},
            "frames": int(sum(len(r.ious) for r in results)), "occluded_frames": int(sum(m.sum() for m in occluded)),
            "sequences": per_sequence}
