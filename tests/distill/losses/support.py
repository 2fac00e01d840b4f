"""Shared helpers for the loss-zoo tests: float64 tensors and batches built from plain lists."""
from __future__ import annotations

import torch

from compressor.distill.losses.zoo import LOSSES, KDBatch

FEATURE_LOSSES = ("fitnets", "attention", "affinity", "afkd")
PAIR = ["student.block", "teacher.block"]


def f64(values) -> torch.Tensor:
    """A float64 tensor of ``values``."""
    return torch.as_tensor(values, dtype=torch.float64)


def build(name: str, **settings):
    """The registered loss ``name`` with ``settings`` (feature losses get the one test layer pair)."""
    if name in FEATURE_LOSSES:
        settings.setdefault("layers", [PAIR])
    return LOSSES.get(name).build(**settings)


def feature_batch(student, teacher, **extras) -> KDBatch:
    """A batch whose only features are the test pair's."""
    return KDBatch(student_features={PAIR[0]: student}, teacher_features={PAIR[1]: teacher}, extras=extras)
