"""Intrusion-detection metrics against hand-computed values."""
from __future__ import annotations

import math

import numpy as np
import pytest

from compressor.distill.metrics.ids import (
    MetricInputError,
    attack_scores,
    class_scores,
    confusion_matrix,
    flat_metrics,
    ids_report,
)

NAMES = ("normal", "dos", "fuzzy", "gear", "rpm")
# 10 frames: 5 normal (one called fuzzy), 3 fuzzy (one missed, one called dos), 2 dos (both right)
Y_TRUE = np.array([0, 0, 0, 0, 0, 2, 2, 2, 1, 1])
Y_PRED = np.array([0, 0, 0, 0, 2, 2, 0, 1, 1, 1])


def test_confusion_matrix_counts_true_rows_and_predicted_columns():
    cm = confusion_matrix(Y_TRUE, Y_PRED, 5)
    assert cm.tolist() == [[4, 0, 1, 0, 0], [0, 2, 0, 0, 0], [1, 1, 1, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]
    assert cm.sum() == 10


def test_fuzzy_class_scores():
    s = class_scores(confusion_matrix(Y_TRUE, Y_PRED, 5), 2)
    # TP 1, FP 1 (a normal frame), FN 2, TN 6
    assert (s["tp"], s["fp"], s["fn"], s["tn"]) == (1, 1, 2, 6)
    assert s["precision"] == pytest.approx(0.5) and s["recall"] == pytest.approx(1 / 3)
    assert s["f1"] == pytest.approx(0.4)  # 2 * 0.5 * (1/3) / (0.5 + 1/3)
    assert s["fnr"] == pytest.approx(2 / 3) and s["fpr"] == pytest.approx(1 / 7)


def test_dos_class_and_overall_attack_scores():
    cm = confusion_matrix(Y_TRUE, Y_PRED, 5)
    dos = class_scores(cm, 1)
    assert dos["precision"] == pytest.approx(2 / 3) and dos["recall"] == 1.0 and dos["f1"] == pytest.approx(0.8)
    attack = attack_scores(cm)
    # any attack vs normal: TP 4 (fuzzy->dos counts as detected), FN 1, FP 1, TN 4
    assert (attack["tp"], attack["fn"], attack["fp"], attack["tn"]) == (4, 1, 1, 4)
    assert attack["f1"] == pytest.approx(0.8) and attack["fnr"] == pytest.approx(0.2)
    assert attack["fpr"] == pytest.approx(0.2) and attack["error_rate"] == pytest.approx(0.2)


def test_absent_class_is_nan_not_zero():
    gear = class_scores(confusion_matrix(Y_TRUE, Y_PRED, 5), 3)
    assert math.isnan(gear["f1"]) and math.isnan(gear["recall"]) and gear["fpr"] == 0.0


def test_report_and_flat_metrics():
    report = ids_report(Y_TRUE, Y_PRED, NAMES)
    assert report["accuracy"] == pytest.approx(0.7)
    assert report["macro_f1"] == pytest.approx((0.8 + 0.4) / 2)  # dos and fuzzy: the attack classes present
    flat = flat_metrics(report)
    assert flat["fuzzy_f1"] == pytest.approx(0.4) and flat["attack_fnr"] == pytest.approx(0.2)
    assert all(isinstance(v, float) for v in flat.values())


def test_perfect_and_empty_predictions():
    perfect = class_scores(confusion_matrix(Y_TRUE, Y_TRUE, 5), 2)
    assert perfect["f1"] == 1.0 and perfect["fnr"] == 0.0 and perfect["fpr"] == 0.0
    never = class_scores(confusion_matrix(Y_TRUE, np.zeros(10, np.int64), 5), 2)
    assert never["precision"] == 0.0 and never["f1"] == 0.0 and never["fnr"] == 1.0


def test_bad_inputs_are_typed_errors():
    with pytest.raises(MetricInputError):
        confusion_matrix(np.array([0, 1]), np.array([0]), 2)
    with pytest.raises(MetricInputError):
        confusion_matrix(np.array([0, 5]), np.array([0, 1]), 5)
