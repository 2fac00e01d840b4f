"""Intrusion-detection metrics from a confusion matrix: per attack class (one class against the rest) and
overall (any attack against normal), as the CAN IDS papers report them.

precision TP/(TP+FP), recall TP/(TP+FN), F1, false-negative rate FN/(TP+FN), false-positive rate FP/(FP+TN),
error rate (FP+FN)/N. A class absent from the data has NaN precision, recall, F1 and FNR. Class 0 is normal.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from compressor.core.errors import CompressError

NAN = float("nan")


class MetricInputError(CompressError, ValueError):
    """Labels and predictions that cannot be scored together."""


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, classes: int) -> np.ndarray:
    """``cm[i, j]`` = frames of true class ``i`` predicted as ``j``.

    >>> confusion_matrix(np.array([0, 1, 1]), np.array([0, 1, 0]), 2).tolist()
    [[1, 0], [1, 1]]
    """
    y_true, y_pred = np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise MetricInputError(f"labels {y_true.shape} and predictions {y_pred.shape} must be equal 1-D arrays")
    if len(y_true) and (min(y_true.min(), y_pred.min()) < 0 or max(y_true.max(), y_pred.max()) >= classes):
        raise MetricInputError(f"class indices must lie in 0..{classes - 1}")
    return np.bincount(y_true * classes + y_pred, minlength=classes * classes).reshape(classes, classes)


def binary_scores(tp: int, fp: int, fn: int, tn: int) -> dict[str, float]:
    """precision, recall, F1, FNR, FPR and support from the four counts (NaN where there are no positives)."""
    support = tp + fn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / support if support else NAN
    if support:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    else:
        precision, f1 = NAN, NAN
    return {"precision": precision, "recall": recall, "f1": f1, "fnr": fn / support if support else NAN,
            "fpr": fp / (fp + tn) if fp + tn else 0.0, "support": float(support),
            "tp": float(tp), "fp": float(fp), "fn": float(fn), "tn": float(tn)}


def class_scores(cm: np.ndarray, index: int) -> dict[str, float]:
    """One class against the rest."""
    tp = int(cm[index, index])
    fp, fn = int(cm[:, index].sum()) - tp, int(cm[index, :].sum()) - tp
    return binary_scores(tp, fp, fn, int(cm.sum()) - tp - fp - fn)


def attack_scores(cm: np.ndarray) -> dict[str, float]:
    """Any attack class (1..) against normal (0): a frame is detected when it is predicted as any attack."""
    tp, fn = int(cm[1:, 1:].sum()), int(cm[1:, 0].sum())
    fp, tn = int(cm[0, 1:].sum()), int(cm[0, 0])
    scores = binary_scores(tp, fp, fn, tn)
    scores["error_rate"] = (fp + fn) / cm.sum() if cm.sum() else NAN
    return scores


def ids_report(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Everything at once: per-class and overall scores, multi-class accuracy, macro F1 over the attack
    classes present, and the confusion matrix."""
    cm = confusion_matrix(y_true, y_pred, len(class_names))
    per_class = {name: class_scores(cm, i) for i, name in enumerate(class_names)}
    present = [per_class[name]["f1"] for name in class_names[1:] if per_class[name]["support"] > 0]
    return {"classes": per_class, "attack": attack_scores(cm),
            "accuracy": float(np.trace(cm) / cm.sum()) if cm.sum() else NAN,
            "macro_f1": float(np.mean(present)) if present else NAN, "confusion": cm.tolist(),
            "class_names": list(class_names), "frames": int(cm.sum())}


def flat_metrics(report: dict[str, Any]) -> dict[str, float]:
    """The scalar metrics a run report tabulates: each attack class's F1, precision, recall, FNR and FPR,
    the overall attack scores, error rate, accuracy and macro F1."""
    flat: dict[str, float] = {}
    for name in report["class_names"][1:]:
        scores = report["classes"][name]
        flat.update({f"{name}_{key}": scores[key] for key in ("f1", "precision", "recall", "fnr", "fpr")})
    attack = report["attack"]
    flat.update({f"attack_{key}": attack[key] for key in ("f1", "precision", "recall", "fnr", "fpr")})
    flat.update({"error_rate": attack["error_rate"], "accuracy": report["accuracy"], "macro_f1": report["macro_f1"],
                 "frames": float(report["frames"])})
    return {k: float(v) for k, v in flat.items()}


def is_nan(value: float) -> bool:
    return isinstance(value, float) and math.isnan(value)
