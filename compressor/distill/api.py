"""Distil your own models from Python (a notebook): the same pipeline ``compress run`` runs.

>>> result = distill(teacher, student, train_loader, val_loader, steps=200, out_dir="runs/mine")  # doctest: +SKIP
>>> result.report.summary.student, result.bundle                                                    # doctest: +SKIP
"""
from __future__ import annotations

import copy
import itertools
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from compressor.distill.report.model import RunReport

DEFAULT_LOSSES: tuple[dict[str, Any], ...] = ({"name": "hinton", "weight": 0.9, "temperature": 4.0},
                                              {"name": "ce", "weight": 0.1})
_COUNTER = itertools.count()


@dataclass(frozen=True)
class DistillResult:
    """The distilled student (PyTorch, trained weights), the run's report, its folder and bundle."""

    student: nn.Module
    report: RunReport
    out_dir: Path
    bundle: Path | None = None


def distill(teacher: nn.Module, student: nn.Module, train: Iterable, val: Iterable | None = None, *,
            losses: Sequence[Mapping[str, Any]] = DEFAULT_LOSSES, steps: int = 500, lr: float = 1e-3,
            batch: int | None = None, task: str = "classification", out_dir: str | Path = "runs/distill",
            targets: Sequence[str | Mapping[str, Any]] = ("onnxruntime:fp32", "openvino:fp32"),
            teacher_steps: int = 0, seed: int = 0, bundle: bool = True, int8_budget: float = 0.02,
            profile_seconds: float = 0.5, stage: Callable[[str], None] | None = print) -> DistillResult:
    """Distil ``student`` from ``teacher`` on ``train`` (a DataLoader or iterable of ``(x, y)`` / ``x``
    batches; ``val`` likewise, else a seeded fifth of ``train`` is held out), then export, build ``targets``
    (``"target:precision"`` or ``{target, precision, ...}``), check, evaluate, profile, report and bundle.

    The teacher is used as given (``teacher_steps`` > 0 trains it with cross-entropy first); the baseline is
    the student trained with ``ce`` only (same steps, data and seed). ``losses`` are ``distill.losses`` entries.
    Models without ``input_specs`` take their input from the data's shape.
    """
    from compressor.distill.data.user import batches_to_arrays
    from compressor.distill.pipeline import run_recipe
    from compressor.distill.recipe import parse_recipe
    from compressor.distill.recipes.starter import starter_mapping
    from compressor.distill.tasks.base import RunContext

    train_set = batches_to_arrays(train, "train")
    val_set = None if val is None else batches_to_arrays(val, "val")
    names = _publish(teacher=lambda: teacher, student=lambda: student,
                     data=lambda: {"train": train_set, "val": val_set})
    try:
        mapping = starter_mapping("distill", task=task, teacher=names["teacher"], student=names["student"],
                                  data=names["data"])
        mapping.update(seed=seed, description="distilled from Python (compressor.distill.distill)")
        mapping["teacher"]["train"] = {"iterations": teacher_steps, "lr": lr, "batch": batch or _batch_of(train)}
        mapping["distill"] = {"losses": [dict(entry) for entry in losses],
                              "train": {"iterations": steps, "lr": lr, "batch": batch or _batch_of(train)}}
        choices = [_target(t) for t in targets]
        mapping["deploy"] = {"targets": choices, "reference_target": {"target": "onnxruntime", "precision": "fp32"},
                             "bundle": bundle, "int8_budget": int8_budget, "profile_seconds": profile_seconds,
                             "profile_iterations": 10}
        recipe = parse_recipe(mapping, "python", quick=False)
        folder = Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        context = RunContext(out_dir=folder, seed=seed, quick=False, stage=stage or (lambda text: None))
        result = run_recipe(recipe, context)
    finally:
        _unpublish(names)
    trained = copy.deepcopy(student)
    from compressor.models._weights import load_weights

    load_weights(trained, folder / "checkpoints" / "student.pt", name="student")
    return DistillResult(trained.eval(), result.report, result.out_dir, result.bundle)


def _target(entry: str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(entry, Mapping):
        return dict(entry)
    target, _, precision = str(entry).partition(":")
    return {"target": target, "precision": precision or "fp32"}


def _batch_of(loader: Iterable) -> int:
    size = getattr(loader, "batch_size", None)
    return int(size) if isinstance(size, int) and size > 0 else 64


def _publish(**objects: Callable[[], Any]) -> dict[str, str]:
    """Expose in-memory factories as ``compressor.distill.api:NAME`` so the recipe machinery loads them."""
    module = sys.modules[__name__]
    token = next(_COUNTER)
    names = {}
    for role, factory in objects.items():
        attr = f"_live_{role}_{token}"
        setattr(module, attr, factory)
        names[role] = f"{__name__}:{attr}"
    return names


def _unpublish(names: Mapping[str, str]) -> None:
    module = sys.modules[__name__]
    for spec in names.values():
        delattr(module, spec.rpartition(":")[2])
