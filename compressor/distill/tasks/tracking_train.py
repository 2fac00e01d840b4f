"""Training pieces of the tracking task: the ORTrack objective (tracking losses + ORR) and the three runs
(teacher with ORR, student with AFKD and ORR, baseline student without KD)."""
from __future__ import annotations

import copy
import ctypes
import functools
import logging
import sys
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import Tensor, nn

from compressor.distill.distillers.afkd import AFKDDistiller, AFKDLoss, AFKDWeights
from compressor.distill.losses.orr import CoxBlockMasking, OrrLoss
from compressor.distill.losses.tracking import TrackingLoss, TrackingLossWeights
from compressor.distill.trainer import (
    TrainResult,
    TrainSchedule,
    seed_everything,
    train,
)

log = logging.getLogger(__name__)


@functools.cache
def retain_freed_memory() -> bool:
    """Ask glibc to keep freed blocks up to 32 MiB in the heap instead of unmapping them.

    Each training step frees and re-allocates the same activation buffers; by default glibc hands large
    blocks back to the OS and page-faults them in again every step, which made steps up to 8x slower
    on the 2-core VMs we measured on. Process-wide and harmless elsewhere; a no-op outside glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    ok = bool(libc.mallopt(m_mmap_threshold, 32 * 1024 * 1024)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))
    log.debug("glibc mallopt to retain freed memory: %s", ok)
    return ok


@dataclass
class TaskResult:
    """The clean pass: weighted tracking loss, its parts, per-sample GIoU and the backbone tokens."""

    loss: Tensor
    parts: dict[str, float]
    giou: Tensor
    tokens: Tensor


class TrackerObjective:
    """ORTrack's training objective for a model with ``backbone(z, x)`` and ``forward_head(tokens)``.

    ``task`` runs the clean pass (focal + GIoU + L1); ``orr`` runs the masked-template pass and returns
    ``(orr_weight * L_orr, L_orr)`` or None when ORR is off. Calling the objective does both.
    """

    def __init__(self, loss: TrackingLoss, *, masking: CoxBlockMasking | None = None, orr_weight: float = 0.0,
                 orr_loss: OrrLoss | None = None, seed: int = 0) -> None:
        self.loss, self.masking, self.orr_weight = loss, masking, orr_weight
        self.orr_loss = orr_loss or OrrLoss()
        self.generator = torch.Generator().manual_seed(seed)

    @property
    def uses_orr(self) -> bool:
        return self.masking is not None and self.orr_weight > 0

    def task(self, model: nn.Module, template: Tensor, search: Tensor, boxes: Tensor) -> TaskResult:
        tokens = model.backbone(template, search)
        total, parts, giou = self.loss(model.forward_head(tokens), boxes)
        return TaskResult(total, parts, giou, tokens)

    def orr(self, model: nn.Module, template: Tensor, search: Tensor, clean_tokens: Tensor):
        if not self.uses_orr:
            return None
        # drawn on the CPU from the objective's own generator (the same masks on every device), then moved
        mask = self.masking.sample(template.shape[0], self.generator).to(template.device)
        masked = model.backbone(template * mask, search)
        value = self.orr_loss(clean_tokens, masked, model.backbone.num_template_tokens)
        return self.orr_weight * value, value.item()

    def __call__(self, model: nn.Module, template: Tensor, search: Tensor, boxes: Tensor):
        result = self.task(model, template, search, boxes)
        total, parts = result.loss, dict(result.parts)
        orr = self.orr(model, template, search, result.tokens)
        if orr is not None:
            total, parts["orr"] = total + orr[0], orr[1]
        return total, parts


def make_objective(model: nn.Module, weights: TrackingLossWeights, *, orr: bool, orr_weight: float,
                   ratio: float, block: int, stop_gradient: str, seed: int) -> TrackerObjective:
    """The objective for ``model``'s template size; ``orr=False`` gives the plain tracking loss."""
    masking = CoxBlockMasking(model.template_size, block=block, ratio=ratio) if orr else None
    return TrackerObjective(TrackingLoss(weights), masking=masking, orr_weight=orr_weight,
                            orr_loss=OrrLoss(stop_gradient), seed=seed)


def train_tracker(model: nn.Module, objective: TrackerObjective, batches: Iterator, schedule: TrainSchedule, *,
                  seed: int, desc: str) -> TrainResult:
    """Train ``model`` (in place) with ``objective`` alone (teacher, baseline)."""
    retain_freed_memory()
    seed_everything(seed)
    model.train()
    return train(lambda b: objective(model, *b), model.parameters(), batches, schedule, desc=desc,
                 state=[model, objective])


def distil_tracker(student: nn.Module, teacher: nn.Module, objective: TrackerObjective, batches: Iterator,
                   schedule: TrainSchedule, *, pairs, weights: AFKDWeights, seed: int, desc: str) -> TrainResult:
    """Train ``student`` (in place) with ``objective`` plus AFKD against the frozen ``teacher``."""
    retain_freed_memory()
    seed_everything(seed)
    distiller = AFKDDistiller(student.train(), teacher, objective, pairs, AFKDLoss(weights))
    return train(lambda b: distiller(*b), student.parameters(), batches, schedule, desc=desc,
                 state=[distiller, objective])


def init_from_teacher(student: nn.Module, teacher: nn.Module) -> list[str]:
    """Copy every teacher tensor whose name and shape the student shares (embeddings, first blocks, norm,
    head); returns the copied names. The depth-``k`` student gets the teacher's first ``k`` blocks."""
    own, source = student.state_dict(), teacher.state_dict()
    copied = [k for k, v in own.items() if k in source and source[k].shape == v.shape]
    student.load_state_dict({**own, **{k: source[k] for k in copied}})
    return copied


def frozen_copy(model: nn.Module) -> nn.Module:
    """A detached eval-mode copy (the teacher as the distiller sees it)."""
    return copy.deepcopy(model).eval().requires_grad_(False)
