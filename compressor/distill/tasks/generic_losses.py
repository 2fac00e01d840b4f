"""The generic tasks' training objective: a weighted sum of loss terms named in ``distill.losses``.

``ce`` is cross-entropy on the labels; every other name is a registered loss
(:data:`compressor.distill.losses.zoo.LOSSES`), built from the entry's other keys (``layers`` included:
``[[student.path, teacher.path], ...]``) and called with one :class:`~compressor.distill.losses.zoo.KDBatch`
holding the student's and the teacher's primary outputs, the labels, and the outputs of the module paths the
losses declare (``feature_paths()``), captured with forward hooks.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from compressor.core.errors import CompressError, did_you_mean
from compressor.distill.config import REST, ConfigError
from compressor.distill.losses.precision import autocast_off, widen


@dataclass(frozen=True)
class LossEntry:
    """One recipe entry of ``distill.losses``: ``{name, weight, layers, ...the loss's own settings}``."""

    name: str
    weight: float = 1.0
    layers: tuple[tuple[str, ...], ...] = ()
    settings: tuple[tuple[str, Any], ...] = field(default=(), metadata={"config": REST})

    @property
    def uses_teacher(self) -> bool:
        return self.name != "ce"

    def describe(self) -> dict[str, Any]:
        """The entry as the report shows it."""
        out: dict[str, Any] = {"name": self.name, "weight": self.weight, **dict(self.settings)}
        if self.layers:
            out["layers"] = [list(pair) for pair in self.layers]
        return out


def registered_losses():
    """The loss registry, with every registered loss imported."""
    from compressor.distill.losses import zoo

    return zoo.LOSSES


def check_entries(entries: Sequence[LossEntry], *, labelled: bool) -> None:
    """One-line errors for unknown loss names, bad ``layers`` pairs, and ``ce`` without labels."""
    losses = registered_losses()
    for i, entry in enumerate(entries):
        where = f"distill.losses[{i}]"
        if entry.name != "ce" and entry.name not in losses:
            names = ["ce", *losses.names()]
            raise ConfigError(f"{where}: unknown loss '{entry.name}'{did_you_mean(entry.name, names)}; "
                              f"choose from: {', '.join(names)}")
        if entry.name == "ce" and not labelled:
            raise ConfigError(f"{where}: 'ce' needs labels, and this data has none (remove it for label-free "
                              f"distillation)")
        for pair in entry.layers:
            if len(pair) != 2:
                raise ConfigError(f"{where}.layers: each entry is [student.module.path, teacher.module.path]")
        try:
            Objective._build(entry)
        except CompressError as exc:
            raise ConfigError(f"{where}: {exc}") from None


class CrossEntropyTerm(nn.Module):
    """``ce``: cross-entropy of the student's logits on the labels."""

    def forward(self, batch) -> Tensor:
        batch.need("labels", "student", loss="ce")
        return F.cross_entropy(batch.student, batch.labels)


def primary_output(output: Any) -> Tensor:
    """A model's primary output: the tensor itself, or the first tensor of a tuple/list/dict."""
    if isinstance(output, Tensor):
        return output
    values = output.values() if isinstance(output, dict) else output
    for value in values:
        if isinstance(value, Tensor):
            return value
    raise ConfigError(f"the model returned {type(output).__name__} without a tensor")


class Objective(nn.Module):
    """``sum_i weight_i * term_i``; the terms' own parameters (learned adapters) train with the student."""

    def __init__(self, entries: Sequence[LossEntry], student: nn.Module, teacher: nn.Module | None,
                 total_steps: int) -> None:
        super().__init__()
        self.entries = tuple(entries)
        self.student, self.teacher = student, teacher
        self.total_steps, self.step = max(total_steps, 1), 0
        if teacher is None and any(e.uses_teacher for e in entries):
            raise ConfigError("a teacher term needs a teacher")
        self.terms = nn.ModuleList([self._build(e) for e in self.entries])
        self._student_hooks = self._teacher_hooks = None

    @staticmethod
    def _build(entry: LossEntry) -> nn.Module:
        if entry.name == "ce":
            if entry.settings or entry.layers:
                raise ConfigError("loss 'ce' takes no settings besides weight")
            return CrossEntropyTerm()
        settings = dict(entry.settings)
        if entry.layers:
            settings["layers"] = [list(pair) for pair in entry.layers]
        return registered_losses().get(entry.name).build(**settings)

    @contextlib.contextmanager
    def hooked(self) -> Iterator[Objective]:
        """Capture the features the terms declare (``feature_paths()``) on student and teacher while inside."""
        from compressor.distill.losses.zoo import hook_paths, loss_feature_paths

        student_paths, teacher_paths = loss_feature_paths(self.terms)
        if teacher_paths and self.teacher is None:
            raise ConfigError("a feature term needs a teacher")
        with hook_paths(self.student, student_paths) as s_hooks, \
                hook_paths(self.teacher if self.teacher is not None else self.student, teacher_paths) as t_hooks:
            self._student_hooks, self._teacher_hooks = s_hooks, t_hooks
            try:
                yield self
            finally:
                self._student_hooks = self._teacher_hooks = None

    def batch(self, inputs: Tensor, labels: Tensor | None):
        """The KDBatch of one forward pass of the student (with gradient) and the teacher (without)."""
        from compressor.distill.losses.zoo import KDBatch

        student = primary_output(self.student(inputs))
        student_features = self._student_hooks.features()
        teacher, teacher_features = None, {}
        if self.teacher is not None:
            with torch.no_grad():
                teacher = primary_output(self.teacher(inputs)).detach()
                teacher_features = {p: f.detach() for p, f in self._teacher_hooks.features().items()}
        return KDBatch(student=student, teacher=teacher, labels=labels, student_features=student_features,
                       teacher_features=teacher_features, step=self.step, total_steps=self.total_steps)

    def fit_statistics(self, data: Iterable[tuple[Tensor, Tensor | None]]) -> None:
        """Let terms that need statistics of the teacher over the training set (ND's class-mean embeddings,
        ``fit_class_means``) compute them from ``data`` (every training batch once) before training."""
        needing = [term for term in self.terms if hasattr(term, "fit_class_means")]
        if not needing:
            return
        collected: dict[int, list[Tensor]] = {id(term): [] for term in needing}
        labels_seen: list[Tensor] = []
        with torch.no_grad():
            for inputs, labels in data:
                if labels is None:
                    raise ConfigError("loss 'nd' needs labelled data (the teacher's class means)")
                batch = self.batch(inputs, labels)
                labels_seen.append(labels)
                for term in needing:
                    collected[id(term)].append(term.embeddings(batch)[1])
        for term in needing:
            term.fit_class_means(torch.cat(collected[id(term)]), torch.cat(labels_seen))

    def prepare(self, inputs: Tensor, labels: Tensor | None) -> None:
        """Let terms with a ``prepare(batch)`` build their adapters from one batch (before the optimiser exists)."""
        with torch.no_grad():
            batch = self.batch(inputs, labels)
            for term in self.terms:
                if hasattr(term, "prepare"):
                    term.prepare(batch)

    def forward(self, inputs: Tensor, labels: Tensor | None) -> tuple[Tensor, dict[str, float]]:
        """The weighted sum of the terms on one batch. Under mixed precision the models run in bf16/fp16 but
        every term (softmax, KL, norms, adapters) runs in float32 on widened outputs, so the sum is float32."""
        batch = self.batch(inputs, labels)
        total, parts = None, {}
        with autocast_off():
            batch = widen(batch)
            for entry, term in zip(self.entries, self.terms):
                value = widen(term(batch))
                parts[entry.name] = float(value.detach())
                total = entry.weight * value if total is None else total + entry.weight * value
        self.step += 1
        return total, parts

    def get_extra_state(self) -> dict[str, int]:
        """The step counter (schedules such as TAID's follow it), kept in ``state_dict`` for exact resume."""
        return {"step": self.step}

    def set_extra_state(self, state: dict[str, int]) -> None:
        self.step = int(state["step"])

    def trainable(self) -> list[nn.Parameter]:
        """The student's parameters and the terms' own (adapters); never the teacher's."""
        return [*self.student.parameters(), *self.terms.parameters()]
