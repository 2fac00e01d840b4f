"""Classification metrics from logits: top-1, top-5 and agreement with the teacher's top-1."""
from __future__ import annotations

import numpy as np


def topk_accuracy(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of samples whose label is among the ``k`` highest logits (``k`` capped at the class count).

    >>> topk_accuracy(np.array([[0.1, 0.9], [0.8, 0.2]]), np.array([1, 1]), 1)
    0.5
    """
    k = min(k, logits.shape[1])
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())


def agreement(logits: np.ndarray, reference_top1: np.ndarray) -> float:
    """Share of samples whose top-1 class equals ``reference_top1`` (the teacher's, in PyTorch)."""
    return float((logits.argmax(axis=1) == reference_top1).mean())


def classification_metrics(logits: np.ndarray, labels: np.ndarray | None,
                           teacher_top1: np.ndarray | None) -> dict[str, float]:
    """``top1``, ``top5`` (with labels) and ``agreement`` (with the teacher's top-1) of ``logits`` (N x C)."""
    if logits.ndim != 2:
        raise ValueError(f"classification metrics need N x C logits, got shape {logits.shape}")
    out: dict[str, float] = {}
    if labels is not None:
        out["top1"] = topk_accuracy(logits, labels, 1)
        out["top5"] = topk_accuracy(logits, labels, 5)
    if teacher_top1 is not None:
        out["agreement"] = agreement(logits, teacher_top1)
    return out
