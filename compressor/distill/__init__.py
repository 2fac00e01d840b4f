"""Training: tasks, losses, distillers, data, metrics, the INT8 stage, the run report, and the pipeline that
runs a recipe (``compress run``).

Distil your own models from Python with :func:`compressor.distill.distill` (:mod:`compressor.distill.api`)::

    from compressor.distill import distill
    result = distill(teacher, student, train_loader, val_loader, steps=300, targets=["onnxruntime:fp32"])
    result.student, result.report.summary, result.bundle

It runs the same pipeline as ``compress run`` with task ``classification`` (or ``task="embedding"``).
"""
from __future__ import annotations

from typing import Any

__all__ = ["DistillResult", "distill"]


def __getattr__(name: str) -> Any:  # lazy: importing a submodule should not load the whole pipeline
    if name in __all__:
        from compressor.distill import api

        return getattr(api, name)
    raise AttributeError(f"module 'compressor.distill' has no attribute '{name}'")
