"""OPE metrics against values worked out by hand."""
import numpy as np
import pytest

from compressor.distill.metrics.tracking import (
    TrackingMetricError,
    center_error,
    evaluate_sequence,
    frame_metrics,
    iou,
    success_curve,
    summarize,
)


def test_iou_known_boxes():
    gt = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], float)
    pred = np.array([[0, 0, 10, 10], [5, 0, 10, 10], [20, 20, 5, 5], [np.nan, 0, 1, 1]], float)
    np.testing.assert_allclose(iou(pred, gt), [1.0, 50 / 150, 0.0, 0.0])


def test_auc_for_known_ious():
    # IoU > t over t = 0, 0.05, ..., 1: 1.0 passes 20 thresholds, 0.5 passes 10 (t < 0.5), 0.0 none
    curve = success_curve(np.array([1.0, 0.5, 0.0]))
    assert curve[0] == pytest.approx(2 / 3) and curve[10] == pytest.approx(1 / 3) and curve[-1] == 0
    assert curve.mean() == pytest.approx((10 * 2 / 3 + 10 * 1 / 3) / 21)
    assert success_curve(np.ones(5)).mean() == pytest.approx(20 / 21)  # the toolkits' perfect score


def test_precision_at_20_pixels_and_normalised():
    gt = np.array([[0, 0, 10, 20]] * 4, float)
    pred = gt + np.array([[0, 0, 0, 0], [19.9, 0, 0, 0], [12, 16, 0, 0], [20.1, 0, 0, 0]])
    errors = center_error(pred, gt)
    np.testing.assert_allclose(errors, [0, 19.9, 20, 20.1])
    norm = center_error(pred, gt, normalized=True)
    np.testing.assert_allclose(norm, [0, 1.99, np.hypot(1.2, 0.8), 2.01])
    m = frame_metrics(np.ones(4), errors, norm)
    assert m["precision"] == 0.75 and m["norm_precision"] == 0.25


def test_sequence_skips_first_and_absent_frames_and_pools_occlusion():
    gt = np.array([[10, 10, 10, 10]] * 5, float)
    pred = gt.copy()
    pred[2] += [100, 0, 0, 0]                            # a miss on an occluded frame
    r = evaluate_sequence("a", pred, gt, absent=np.array([0, 0, 0, 1, 0], bool),
                          occlusion=np.array([0, 0, 0.8, 0, 0.1]))
    assert len(r.ious) == 3                              # frames 1, 2 and 4
    other = evaluate_sequence("b", gt, gt, occlusion=np.array([0, 0.5, 0, 0, 0]))
    summary = summarize([r, other], occluded_threshold=0.3)
    assert summary["auc"] == pytest.approx(((2 / 3) * 20 / 21 + 20 / 21) / 2)
    assert summary["precision"] == pytest.approx((2 / 3 + 1) / 2)
    assert summary["occluded_frames"] == 2 and summary["precision_occluded"] == 0.5
    assert summary["frames"] == 7 and set(summary["sequences"]) == {"a", "b"}


def test_shape_mismatch_is_an_error():
    with pytest.raises(TrackingMetricError, match="must both be N x 4"):
        evaluate_sequence("x", np.zeros((3, 4)), np.zeros((4, 4)))
