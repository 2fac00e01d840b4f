"""Hook what the losses read: the module paths they declare, captured during a forward pass.

A trainer collects the paths once (:func:`loss_feature_paths`), then per step::

    with hook_paths(student, s_paths) as s_hooks, hook_paths(teacher, t_paths) as t_hooks:
        student_out, teacher_out = student(x), teacher(x)
        batch = KDBatch(student_out, teacher_out, student_features=s_hooks.features(),
                        teacher_features=t_hooks.features())
        loss = sum(weight * loss(batch) for weight, loss in weighted_losses)
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Iterator, Sequence

from torch import Tensor, nn

from compressor.distill.hooks import FeatureHooks


class HookedFeatures:
    """The outputs captured at ``paths`` by the latest forward pass, as ``{path: tensor}``."""

    def __init__(self, hooks: FeatureHooks | None, paths: Sequence[str]) -> None:
        self._hooks, self.paths = hooks, tuple(paths)

    def features(self) -> dict[str, Tensor]:
        """``{path: output}`` for every hooked path (read it inside the ``with`` block)."""
        return dict(zip(self.paths, self._hooks.features())) if self._hooks is not None else {}


@contextmanager
def hook_paths(model: nn.Module, paths: Iterable[str], *, index: int = 0) -> Iterator[HookedFeatures]:
    """Forward hooks on ``model``'s modules at ``paths`` (duplicates once) for the ``with`` block's duration."""
    unique = tuple(dict.fromkeys(paths))
    if not unique:
        yield HookedFeatures(None, ())
        return
    with FeatureHooks(model, unique, index=index) as hooks:
        yield HookedFeatures(hooks, unique)


def loss_feature_paths(losses: Iterable[nn.Module]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """All (student, teacher) paths the ``losses`` declare through ``feature_paths()``, each once, in order."""
    student: dict[str, None] = {}
    teacher: dict[str, None] = {}
    for loss in losses:
        if hasattr(loss, "feature_paths"):
            s_paths, t_paths = loss.feature_paths()
            student.update(dict.fromkeys(s_paths))
            teacher.update(dict.fromkeys(t_paths))
    return tuple(student), tuple(teacher)
