"""The training loop every recipe uses: Adam, cosine learning-rate decay, progress lines, and, from the run's
:class:`~compressor.distill.train_runtime.TrainingRuntime`, the device, mixed precision, several processes
(DistributedDataParallel) and checkpoints that resume exactly."""
from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
from torch import Tensor, nn

from compressor.distill import distributed, train_state
from compressor.distill.train_runtime import TrainingRuntime, current_runtime

log = logging.getLogger(__name__)

LOG_WINDOW = 50  # iterations averaged into one point of the loss curve


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
    """Loss history (mean per log window), wall time, and how the training ran (resumed, reused, where)."""

    losses: list[float] = field(default_factory=list)
    parts: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    iterations: int = 0
    resumed_at: int | None = None  # the iteration a killed run continued from
    reused: bool = False  # a finished training with the same inputs was loaded instead of run
    setup: dict[str, Any] = field(default_factory=dict)  # device, precision, processes

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
          on_step: Callable[[int], None] | None = None, state: Sequence[Any] = ()) -> TrainResult:
    """Minimise ``loss_fn(batch) -> (loss, parts)`` over ``schedule.iterations`` batches.

    ``state`` names what the training changes besides ``params``: the modules ``loss_fn`` runs (the student,
    a distiller holding student and teacher, adapters) and objects keeping their own random generators. They are
    checkpointed, moved to the run's device (and back to the CPU when done), and their buffers are averaged
    across processes at the end. ``on_step(iteration)`` (1-based) runs after each optimiser step, e.g. to
    validate and keep the best weights; give it ``state_dict``/``load_state_dict`` to have it checkpointed.

    >>> train(lambda b: (model(b).pow(2).mean(), {}), model.parameters(), iter(data), TrainSchedule(10),
    ...       state=[model])
    """
    return _Training(loss_fn, params, batches, schedule, desc, on_step, state, current_runtime()).run()


class _Trained(nn.Module):
    """The trained parameters as one module, so DistributedDataParallel can average their gradients; calling it
    runs the loss."""

    def __init__(self, params: Sequence[nn.Parameter], loss_fn: Callable) -> None:
        super().__init__()
        self.params = nn.ParameterList(params)
        self._loss_fn = loss_fn

    def forward(self, batch):
        return self._loss_fn(batch)


class _Training:
    def __init__(self, loss_fn, params, batches, schedule: TrainSchedule, desc: str, on_step, state,
                 runtime: TrainingRuntime) -> None:
        self.loss_fn, self.batches, self.schedule, self.desc = loss_fn, batches, schedule, desc
        self.on_step, self.runtime, self.dist = on_step, runtime, runtime.dist
        self.params = [p for p in params if p.requires_grad]
        self.modules = [m for m in state if isinstance(m, nn.Module)]
        self.generators = train_state.owned_generators(list(state) + ([on_step] if on_step is not None else []))
        self.result = TrainResult(setup=runtime.to_dict())
        self.window: list[float] = []
        self.window_parts: list[dict[str, float]] = []
        self.step = self.drawn = 0
        self.data_rng = torch.get_rng_state()  # batches are drawn from their own stream of torch's generator
        self.last_batch: Any = None

    # ------------------------------------------------------------ the run
    def run(self) -> TrainResult:
        from compressor.distill.progress import progress_bar

        self.key = self._key() if self.runtime.state_dir is not None else ""
        self._to_device(self.runtime.device)
        self.optimizer = torch.optim.Adam(self.params, lr=self.schedule.lr, betas=self.schedule.betas)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=max(self.schedule.iterations, 1),
            eta_min=self.schedule.lr * self.schedule.final_lr_ratio)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.runtime.precision == "fp16")
        started = time.perf_counter()
        previous = self._load()
        if previous is not None and previous["complete"]:
            self._restore(previous)
            self._to_device(torch.device("cpu"))
            self.result.reused = True
            log.info("%s: reused a finished training with the same inputs (%s)", self.desc, self._path().name)
            return self.result
        if previous is not None:
            self._resume(previous)
        model = self._model()
        every = self.runtime.checkpoint_every or max(1, math.ceil(self.schedule.iterations / 20))
        bar = progress_bar(self.schedule.iterations, self.desc) if self.dist.is_main else contextlib.nullcontext()
        with bar:
            if self.step and self.dist.is_main:
                bar.update(self.step)
            while self.step < self.schedule.iterations:
                self._step(model)
                if self.dist.is_main and len(self.window) == 0:
                    bar.set_postfix(loss=f"{self.result.losses[-1]:.4f}")
                if self.dist.is_main:
                    bar.update(1)
                if self.step % every == 0 and self.step < self.schedule.iterations:
                    self._save(complete=False)
        distributed.average_buffers(self.modules, self.dist)
        self.result.seconds += time.perf_counter() - started
        self.result.iterations = self.schedule.iterations
        self._save(complete=True)
        self._to_device(torch.device("cpu"))
        log.info("%s: %d iterations in %.1f s, final loss %.4f", self.desc, self.result.iterations,
                 self.result.seconds, self.result.final_loss)
        return self.result

    def _model(self) -> Callable:
        if not self.dist.active:
            return self.loss_fn
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.runtime.device.index] if self.runtime.device.type == "cuda" else None
        return DistributedDataParallel(_Trained(self.params, self.loss_fn), device_ids=device_ids,
                                       broadcast_buffers=False, find_unused_parameters=True)

    def _step(self, model: Callable) -> None:
        batch = self._draw()
        local, weight = distributed.shard(batch, self.dist.rank, self.dist.world_size)
        local = _to(local, self.runtime.device)
        dtype = self.runtime.autocast_dtype
        with torch.autocast(self.runtime.device.type, dtype=dtype, enabled=dtype is not None):
            loss, parts = model(local)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss * weight if weight != 1.0 else loss).backward()
        if self.schedule.grad_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.params, self.schedule.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1
        if self.on_step is not None:
            self.on_step(self.step)
        self.window.append(self._mean_loss(loss.detach(), weight))
        self.window_parts.append(parts)
        if len(self.window) == LOG_WINDOW or self.step == self.schedule.iterations:
            self._close_window()

    def _draw(self):
        """The next global batch, drawn with torch's generator set to the data's own stream, so that training's
        random draws (dropout) do not change the data order and a resumed run can replay it."""
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self.data_rng)
            batch = next(self.batches)
            self.data_rng = torch.get_rng_state()
        self.drawn += 1
        self.last_batch = batch
        return batch

    def _mean_loss(self, loss: Tensor, weight: float) -> float:
        """The loss over the whole batch (every rank's share averaged), for the curve."""
        if not self.dist.active:
            return loss.item()
        import torch.distributed as dist

        value = (loss.float() * weight).reshape(1)
        dist.all_reduce(value)
        return value.item() / self.dist.world_size

    def _close_window(self) -> None:
        self.result.losses.append(sum(self.window) / len(self.window))
        keys = self.window_parts[0].keys() if self.window_parts else ()
        self.result.parts.append({k: sum(p[k] for p in self.window_parts) / len(self.window_parts) for k in keys})
        self.window.clear()
        self.window_parts.clear()

    def _to_device(self, device: torch.device) -> None:
        if device.type == "cpu" and all(p.device.type == "cpu" for p in self.params):
            return
        for module in self.modules:
            module.to(device)
        stray = [p for p in self.params if p.device != device]
        if stray:
            from compressor.core.errors import CompressError

            raise CompressError(f"{self.desc}: {len(stray)} trained parameters are outside the modules given to "
                                f"train(state=...), so they cannot move to {device}")

    # ------------------------------------------------------------ checkpoints
    def _key(self) -> str:
        start = train_state.state_digest(self.params, self.modules)
        return train_state.fingerprint({"run": self.runtime.run_key, "desc": self.desc, "schedule": self.schedule,
                                        "processes": self.dist.world_size, "precision": self.runtime.precision,
                                        "device": self.runtime.device.type, "start": start})

    def _path(self) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in self.desc)
        return Path(self.runtime.state_dir or ".") / f"{safe}-{self.key}.pt"

    def _load(self) -> dict[str, Any] | None:
        """Rank 0 reads this training's checkpoint (a finished one when reuse is on, a partial one with
        --resume) and every rank gets it."""
        payload = None
        if self.runtime.state_dir is not None and self.dist.is_main and self._path().is_file():
            payload = train_state.load_checkpoint(self._path())
            wanted = self.runtime.reuse if payload.get("complete") else self.runtime.resume
            payload = payload if wanted else None
        return distributed.broadcast_object(payload, self.dist)

    def _save(self, *, complete: bool) -> None:
        if self.runtime.state_dir is None:
            return
        rng = distributed.gather_objects({"global": train_state.global_rng_state(),
                                          "generators": train_state.generator_states(self.generators)}, self.dist)
        if not self.dist.is_main:
            return
        payload = {"desc": self.desc, "key": self.key, "complete": complete, "step": self.step,
                   "drawn": self.drawn, "data_rng": self.data_rng, "batch_digest": digest_batch(self.last_batch),
                   "modules": train_state.module_states(self.modules),
                   "params": [] if self.modules else [p.detach().cpu().clone() for p in self.params],
                   "optimizer": _cpu(self.optimizer.state_dict()), "scheduler": self.scheduler.state_dict(),
                   "scaler": self.scaler.state_dict(), "rng": rng,
                   "on_step": self.on_step.state_dict() if hasattr(self.on_step, "state_dict") else None,
                   "result": {"losses": self.result.losses, "parts": self.result.parts, "window": self.window,
                              "window_parts": self.window_parts, "seconds": self.result.seconds}}
        Path(self.runtime.state_dir).mkdir(parents=True, exist_ok=True)
        train_state.save_checkpoint(self._path(), payload)

    def _restore(self, payload: dict[str, Any]) -> None:
        """Every state the checkpoint holds, back into this training (rank ``r`` takes its own random states)."""
        if payload["key"] != self.key:
            raise train_state.CheckpointError(f"training checkpoint {self._path()} belongs to another training")
        train_state.load_module_states(self.modules, payload["modules"])
        with torch.no_grad():
            for param, saved in zip(self.params, payload["params"]):
                param.copy_(saved)
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.scaler.load_state_dict(payload["scaler"])
        rng = payload["rng"]
        if len(rng) != self.dist.world_size:
            raise train_state.CheckpointError(f"training checkpoint {self._path()} was written by {len(rng)} "
                                              f"processes, this run has {self.dist.world_size}")
        mine = rng[self.dist.rank]
        train_state.set_global_rng_state(mine["global"])
        train_state.set_generator_states(self.generators, mine["generators"])
        if payload["on_step"] is not None and hasattr(self.on_step, "load_state_dict"):
            self.on_step.load_state_dict(payload["on_step"])
        saved = payload["result"]
        self.result.losses, self.result.parts = list(saved["losses"]), list(saved["parts"])
        self.window, self.window_parts = list(saved["window"]), list(saved["window_parts"])
        self.result.seconds = float(saved["seconds"])
        self.step = int(payload["step"])
        if payload["complete"]:
            self.result.iterations = self.schedule.iterations

    def _resume(self, payload: dict[str, Any]) -> None:
        """Continue a killed training: replay the data order up to where it stopped, then restore every state."""
        started = time.perf_counter()
        for _ in range(int(payload["drawn"])):
            self._draw()
        if not torch.equal(self.data_rng, payload["data_rng"]) or digest_batch(self.last_batch) != \
                payload["batch_digest"]:
            raise train_state.CheckpointError(f"{self.desc}: the data order does not replay (the batches drawn "
                                              f"up to the checkpoint differ); resume is not possible, use --fresh")
        self._restore(payload)
        self.result.resumed_at = self.step
        log.info("%s: resumed at iteration %d of %d (data order replayed in %.1f s)", self.desc, self.step,
                 self.schedule.iterations, time.perf_counter() - started)


def _to(batch: Any, device: torch.device) -> Any:
    if device.type == "cpu":
        return batch
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to(v, device) for v in batch)
    return batch


def _cpu(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, dict):
        return {k: _cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_cpu(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_cpu(v) for v in value)
    return value


def digest_batch(batch: Any) -> str:
    """SHA-256 of a batch's tensors (to tell two data orders apart)."""
    digest = hashlib.sha256()
    for tensor in distributed._tensors(batch):
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
