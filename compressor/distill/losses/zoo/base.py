"""The contract of every registered distillation loss, and the registry ``compress list losses`` shows.

A loss is an ``nn.Module`` built from its keyword settings (a recipe's ``distill.losses[i]`` entry less
``name`` and ``weight``; feature losses take their ``layers`` pairs as a setting) and called with one
:class:`KDBatch`; it returns one unweighted scalar
term (the trainer applies ``weight``). Whatever it needs (logits, labels, hooked features, embeddings, scores)
it reads from the batch and refuses, in one line, a batch that lacks it. Learned adapters (FitNets regressors,
the ND projector, the LEAF projection) are parameters of the loss module: the trainer optimises them with the
student and they are not exported. The teacher's tensors arrive detached; a loss never sends gradient there.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from torch import Tensor, nn

from compressor.core.errors import CompressError
from compressor.core.registry import Registry


class KDInputError(CompressError, ValueError):
    """A batch that lacks what a loss needs, or tensors of shapes it cannot compare."""


@dataclass
class KDBatch:
    """What one training step gives the losses.

    ``student`` / ``teacher``: the models' primary outputs (class logits for classifiers, embeddings for
    encoders). ``student_features`` / ``teacher_features``: hooked module outputs by module path (the
    ``layers`` a loss entry names). ``labels``: class indices when the data has them (None when label-free).
    ``extras``: anything else a loss documents (e.g. Margin-MSE's positive/negative scores).
    ``step`` / ``total_steps``: the schedule position (TAID and warm-ups read it).
    """

    student: Tensor | None = None
    teacher: Tensor | None = None
    labels: Tensor | None = None
    student_features: dict[str, Tensor] = field(default_factory=dict)
    teacher_features: dict[str, Tensor] = field(default_factory=dict)
    extras: dict[str, Tensor] = field(default_factory=dict)
    step: int = 0
    total_steps: int = 1

    def need(self, *names: str, loss: str) -> None:
        """Raise :class:`KDInputError` naming the first of ``names`` (attributes) that is missing."""
        for name in names:
            if getattr(self, name) is None:
                raise KDInputError(f"loss '{loss}' needs {name.replace('_', ' ')}, which this data/model lacks")


@dataclass(frozen=True)
class LossInfo:
    """A registry row: the factory, a one-line description, what it reads, and the paper."""

    name: str
    factory: Callable[..., nn.Module]
    description: str
    needs: tuple[str, ...]  # KDBatch fields it reads: "logits", "labels", "features", "embeddings", "scores"
    reference: str = ""

    def build(self, **settings: Any) -> nn.Module:
        """The loss module with ``settings``; a wrong setting is a one-line error naming it."""
        try:
            return self.factory(**settings)
        except TypeError as exc:
            raise KDInputError(f"loss '{self.name}': {exc}") from None


class KDLoss(nn.Module):
    """Base of the zoo's losses: what a trainer asks of every loss besides ``forward(batch)``.

    ``feature_paths()`` names the module paths to hook on (student, teacher); ``prepare(batch)`` builds
    learned adapters from the shapes of a first batch and must run once before the optimiser is built
    (a no-op for losses without adapters).
    """

    def feature_paths(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The (student, teacher) module paths whose outputs this loss reads from the batch."""
        return (), ()

    def prepare(self, batch: KDBatch) -> None:
        """Build any learned adapter from ``batch``'s shapes (call once, before building the optimiser)."""


LOSSES: Registry[LossInfo] = Registry("loss")


def register_loss(name: str, *, description: str, needs: tuple[str, ...], reference: str = ""):
    """Class decorator registering a loss module under ``name``."""

    def add(cls):
        LOSSES.register(name)(LossInfo(name, cls, description, needs, reference))
        return cls

    return add
