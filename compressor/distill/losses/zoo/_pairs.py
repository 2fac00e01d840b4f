"""Layer pairs for feature losses: parse the ``layers`` setting and read the hooked features of a batch."""
from __future__ import annotations

from typing import Sequence

from torch import Tensor

from compressor.distill.losses.zoo.base import KDBatch, KDInputError

LayerPairs = tuple[tuple[str, str], ...]


def parse_layers(layers: Sequence[str | Sequence[str]] | None, *, loss: str, required: bool = True) -> LayerPairs:
    """``[[student_path, teacher_path], ...]`` (a bare path means the same path on both sides) as a tuple."""
    if layers is None or (isinstance(layers, (list, tuple)) and not layers):
        if required:
            raise KDInputError(f"loss '{loss}' needs layers: [[student_path, teacher_path], ...]")
        return ()
    if isinstance(layers, str):
        layers = [layers]
    pairs = []
    for item in layers:
        if isinstance(item, str):
            pairs.append((item, item))
        elif isinstance(item, (list, tuple)) and len(item) == 2 and all(isinstance(p, str) for p in item):
            pairs.append((item[0], item[1]))
        else:
            raise KDInputError(f"loss '{loss}': each layers entry is a module path or [student_path, "
                               f"teacher_path], got {item!r}")
    return tuple(pairs)


def paired_features(batch: KDBatch, pairs: LayerPairs, *, loss: str) -> list[tuple[Tensor, Tensor]]:
    """The (student, teacher) hooked feature of each pair; a missing path is a one-line error."""
    out = []
    for student_path, teacher_path in pairs:
        for side, path, found in (("student", student_path, batch.student_features),
                                  ("teacher", teacher_path, batch.teacher_features)):
            if path not in found:
                raise KDInputError(f"loss '{loss}' needs the {side} feature '{path}', which was not hooked")
        out.append((batch.student_features[student_path], batch.teacher_features[teacher_path]))
    return out


def embedding_pair(batch: KDBatch, pairs: LayerPairs, *, loss: str) -> tuple[Tensor, Tensor]:
    """The (student, teacher) N x D embeddings a loss reads: its one hooked layer pair when it names one,
    else the models' primary outputs; flattened past the batch axis."""
    if pairs:
        student, teacher = paired_features(batch, pairs, loss=loss)[0]
    else:
        batch.need("student", "teacher", loss=loss)
        student, teacher = batch.student, batch.teacher
    return student.flatten(1), teacher.flatten(1)


def paths_of(pairs: LayerPairs) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(student paths, teacher paths) of ``pairs``, in order."""
    return tuple(s for s, _ in pairs), tuple(t for _, t in pairs)


def check_same_shape(student: Tensor, teacher: Tensor, *, loss: str, what: str = "logits") -> None:
    """Refuse student and teacher tensors of different shapes, in one line."""
    if student.shape != teacher.shape:
        raise KDInputError(f"loss '{loss}' compares {what} of equal shape, got {tuple(student.shape)} "
                           f"and {tuple(teacher.shape)}")
