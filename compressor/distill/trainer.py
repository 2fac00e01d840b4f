"""A small, deterministic training loop: Adam, cosine learning-rate decay, a progress bar."""
from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainSchedule:
    """How long and how fast to train."""

    iterations: int = 1000
    lr: float = 5e-4
    final_lr_ratio: float = 0.01
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float | None = None


@dataclass
class TrainResult:
    """Loss history (mean per log window) and wall time."""

    losses: list[float] = field(default_factory=list)
    parts: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    iterations: int = 0

    @property
    def final_loss(self) -> float:
        return self.losses[-1] if self.losses else float("nan")


def seed_everything(seed: int) -> None:
    """Seed torch's global generator (model initialisation, dropout)."""
    torch.manual_seed(seed)


def cycle(loader_factory: Callable[[int], Iterable]) -> Iterator:
    """Endless batches; ``loader_factory(epoch)`` yields one epoch (so crops differ per epoch, reproducibly)."""
    for epoch in itertools.count():
        yield from loader_factory(epoch)


def train(loss_fn: Callable[[object], tuple[Tensor, dict[str, float]]], params: Iterable[nn.Parameter],
          batches: Iterator, schedule: TrainSchedule, *, desc: str = "train",
          on_step: Callable[[int], None] | None = None) -> TrainResult:
    """Minimise ``loss_fn(batch) -> (loss, parts)`` over ``schedule.iterations`` batches.

    ``on_step(iteration)`` (1-based) runs after each optimiser step, e.g. to validate and keep the best weights.

    >>> train(lambda b: (model(b).pow(2).mean(), {}), model.parameters(), iter(data), TrainSchedule(10))
    """
    from compressor.distill.progress import progress_bar

    params = [p for p in params if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=schedule.lr, betas=schedule.betas)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(schedule.iterations, 1),
                                                       eta_min=schedule.lr * schedule.final_lr_ratio)
    result, window, window_parts = TrainResult(), [], []
    start = time.perf_counter()
    with progress_bar(schedule.iterations, desc) as bar:  # tqdm on a terminal, else timed lines with an ETA
        for step in range(schedule.iterations):
            loss, parts = loss_fn(next(batches))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if schedule.grad_clip:
                nn.utils.clip_grad_norm_(params, schedule.grad_clip)
            optimizer.step()
            sched.step()
            if on_step is not None:
                on_step(step + 1)
            window.append(loss.item())
            window_parts.append(parts)
            if len(window) == 50 or step + 1 == schedule.iterations:
                _close_window(result, window, window_parts)
                bar.set_postfix(loss=f"{result.losses[-1]:.4f}")
            bar.update(1)
    result.seconds, result.iterations = time.perf_counter() - start, schedule.iterations
    log.info("%s: %d iterations in %.1f s, final loss %.4f", desc, result.iterations, result.seconds,
             result.final_loss)
    return result


def _close_window(result: TrainResult, window: list[float], parts: list[dict[str, float]]) -> None:
    result.losses.append(sum(window) / len(window))
    keys = parts[0].keys() if parts else ()
    result.parts.append({k: sum(p[k] for p in parts) / len(parts) for k in keys})
    window.clear()
    parts.clear()
