"""The training loop every recipe uses: Adam, cosine learning-rate decay, progress lines, and, from the run's
:class:`~compressor.distill.train_runtime.TrainingRuntime`, the device, mixed precision, several processes
(DistributedDataParallel) and checkpoints that resume exactly."""
from __future__ import annotations

import contextlib
import itertools
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
from torch import Tensor, nn

from compressor.core.errors import CompressError
from compressor.distill import distributed, train_state
from compressor.distill.tensor_tree import map_tensors
from compressor.distill.train_runtime import TrainingRuntime, current_runtime

log = logging.getLogger(__name__)

LOG_WINDOW = 50  # iterations averaged into one point of the loss curve
CHECKPOINTS_PER_TRAINING = 20  # without --checkpoint-every: a checkpoint every 1/20 of the iterations


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
    checkpoint: Path | None = None  # the training's checkpoint file (None when the run keeps none)

    @property
    def final_loss(self) -> float:
        return self.losses[-1] if self.losses else float("nan")


def seed_everything(seed: int) -> None:
    """Seed torch's global generator (model initialisation, dropout), and numpy's and Python's (user code that
    draws from them), so that two runs with the same seed start from the same random states."""
    import random

    import numpy as np

    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


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

    When the run keeps checkpoints (``TrainingRuntime.state_dir``), one file per training, named by ``desc``
    and a key of the run's inputs, schedule and starting weights, is rewritten atomically every
    ``checkpoint_every`` iterations and once more, complete, at the end. A complete one with the same key and
    setup (processes, precision, device) is loaded instead of training again (unless --fresh); a partial one is
    continued with --resume: the data order is replayed by drawing the batches again (``batches`` must give the
    same batches from the same starting state: seeded, not reading a clock), then every state is restored, so
    that on the CPU the end state equals an uninterrupted run's bit for bit.

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
    """One call of :func:`train`: the loop, and its checkpoints (see :mod:`compressor.distill.train_state`)."""

    def __init__(self, loss_fn, params, batches, schedule: TrainSchedule, desc: str, on_step, state,
                 runtime: TrainingRuntime) -> None:
        self.loss_fn, self.batches, self.schedule, self.desc = loss_fn, batches, schedule, desc
        self.on_step, self.runtime, self.dist = on_step, runtime, runtime.dist
        self.params = [p for p in params if p.requires_grad]
        self.modules = [m for m in state if isinstance(m, nn.Module)]
        held = {id(p) for m in self.modules for p in m.parameters()}
        self.loose = [p for p in self.params if id(p) not in held]  # trained, but in no module of ``state``
        self.generators = train_state.owned_generators(list(state) + ([on_step] if on_step is not None else []))
        self.result = TrainResult(setup=runtime.to_dict())
        self.window: list[float] = []
        self.window_parts: list[dict[str, float]] = []
        self.step = self.drawn = 0
        self.data_rng = torch.get_rng_state()  # batches are drawn from their own stream of torch's generator
        self.last_batch: Any = None
        self.started = self.seconds_before = 0.0  # seconds_before: the killed run's training time
        self.checkpoints = 0
        self.checkpoint_seconds = 0.0
        self.key = ""

    # ------------------------------------------------------------ the run
    def run(self) -> TrainResult:
        if self.runtime.state_dir is not None:
            self.key = self._key()  # of the starting weights, so before anything moves or trains
            self.result.checkpoint = self._path()
            self.runtime.checkpoints_used.add(self._path().name)  # kept when the run prunes its cache
        self._to_device(self.runtime.device)
        self.optimizer = torch.optim.Adam(self.params, lr=self.schedule.lr, betas=self.schedule.betas)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=max(self.schedule.iterations, 1),
            eta_min=self.schedule.lr * self.schedule.final_lr_ratio)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.runtime.precision == "fp16")
        self.started = time.perf_counter()
        previous = self._load()
        if previous is not None and previous["complete"]:
            return self._reuse(previous)
        if previous is not None:
            self._resume(previous)
        self._loop()
        distributed.average_buffers(self.modules, self.dist)
        self.result.seconds = self._seconds()
        self.result.iterations = self.schedule.iterations
        self._save(complete=True)  # replaces this training's partial checkpoint (same file)
        self._to_device(torch.device("cpu"))
        log.info("%s: %d iterations in %.1f s, final loss %.4f", self.desc, self.result.iterations,
                 self.result.seconds, self.result.final_loss)
        if self.checkpoints:
            log.info("%s: %d checkpoints written in %.2f s", self.desc, self.checkpoints, self.checkpoint_seconds)
        return self.result

    def _loop(self) -> None:
        """Train from ``self.step`` to the end; a resumed run's bar counts the iterations left."""
        from compressor.distill.progress import progress_bar

        total = self.schedule.iterations
        every = self.runtime.checkpoint_every or max(1, math.ceil(total / CHECKPOINTS_PER_TRAINING))
        model = self._model()
        desc = f"{self.desc} (from iteration {self.step} of {total})" if self.step else self.desc
        bar = progress_bar(total - self.step, desc) if self.dist.is_main else None
        with bar if bar is not None else contextlib.nullcontext():
            if bar is not None and self.result.losses:
                bar.set_postfix(loss=f"{self.result.losses[-1]:.4f}")
            while self.step < total:
                self._step(model)
                if bar is not None:
                    if not self.window:  # a loss-curve point was just closed
                        bar.set_postfix(loss=f"{self.result.losses[-1]:.4f}")
                    bar.update(1)
                if self.step % every == 0 and self.step < total:
                    self._save(complete=False)

    def _model(self) -> Callable:
        if not self.dist.active:
            return self.loss_fn
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.runtime.device.index] if self.runtime.device.type == "cuda" else None
        # static_graph: parameters the loss never uses (a head a feature loss skips) are found on the first
        # iteration and left out of the gradient averaging from then on, without a graph search every step
        return DistributedDataParallel(_Trained(self.params, self.loss_fn), device_ids=device_ids, static_graph=True)

    def _step(self, model: Callable) -> None:
        batch = self._draw()
        local, weight = distributed.shard(batch, self.dist.rank, self.dist.world_size)
        if self.runtime.device.type != "cpu":
            local = map_tensors(lambda t: t.to(self.runtime.device, non_blocking=True), local)
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
            try:
                batch = next(self.batches)
            except StopIteration:
                raise CompressError(f"{self.desc}: the training batches ran out after {self.drawn} of "
                                    f"{self.schedule.iterations} (train() needs an endless iterator, e.g. "
                                    f"trainer.cycle)") from None
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

    def _seconds(self) -> float:
        """Training time so far, the killed run's included."""
        return self.seconds_before + time.perf_counter() - self.started

    def _to_device(self, device: torch.device) -> None:
        if device.type == "cpu" and all(p.device.type == "cpu" for p in self.params):
            return
        for module in self.modules:
            module.to(device)
        stray = [p for p in self.params if p.device != device]
        if stray:
            raise CompressError(f"{self.desc}: {len(stray)} trained parameters are outside the modules given to "
                                f"train(state=...), so they cannot move to {device}")

    # ------------------------------------------------------------ checkpoints
    def _key(self) -> str:
        """What this training is: the run's inputs, its name and schedule, and its starting weights. The setup
        (processes, precision, device) is recorded in the checkpoint and compared when it is read."""
        start = train_state.state_digest(self.params, self.modules)
        run = self.runtime.role_keys.get(self.desc, self.runtime.run_key)
        return train_state.fingerprint({"run": run, "desc": self.desc, "schedule": self.schedule, "start": start})

    def _setup(self) -> dict[str, Any]:
        return {"processes": self.dist.world_size, "precision": self.runtime.precision,
                "device": self.runtime.device.type}

    def _path(self) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in self.desc)
        return Path(self.runtime.state_dir or ".") / f"{safe}-{self.key}.pt"

    def _load(self) -> dict[str, Any] | None:
        """Rank 0 reads this training's checkpoint (a finished one unless --fresh, a partial one with
        --resume) and every rank gets it, or every rank stops with rank 0's one-line reason."""
        found: dict[str, Any] | str | None = None
        if self.runtime.state_dir is not None and self.dist.is_main:
            found = self._read()
        found = distributed.broadcast_object(found, self.dist)
        if isinstance(found, str):
            raise train_state.CheckpointError(found)
        return found

    def _read(self) -> dict[str, Any] | str | None:
        """The checkpoint this run uses, None when there is none to use, or why the one here is unusable."""
        path = self._path()
        for leftover in train_state.remove_stale_temporaries(path):
            log.info("%s: removed %s, a checkpoint a killed process was writing", self.desc, leftover.name)
        if not (self.runtime.reuse or self.runtime.resume) or not path.is_file():
            return None
        try:
            payload = train_state.load_checkpoint(path)
        except train_state.CheckpointError as exc:
            return str(exc)
        if payload["key"] != self.key or payload["desc"] != self.desc:
            return f"training checkpoint {path} belongs to another training; remove it or run with --fresh"
        written, mine = payload["setup"], self._setup()
        if payload["complete"]:
            if not self.runtime.reuse:
                return None
            if written != mine:
                log.info("%s: the finished training in %s ran on %s, this run has %s: training again",
                         self.desc, path.name, _describe(written), _describe(mine))
                return None
            return payload
        if not self.runtime.resume:
            log.warning("%s: %s holds a killed run's training at iteration %d of %d; starting over (--resume "
                        "continues it)", self.desc, path, payload["step"], self.schedule.iterations)
            return None
        if written != mine:
            return (f"training checkpoint {path} was written by {_describe(written)} and this run has "
                    f"{_describe(mine)}: resume with the same --nproc, --device and --train-precision, or run "
                    f"with --fresh")
        return payload

    def _save(self, *, complete: bool) -> None:
        if self.runtime.state_dir is None:
            return
        started = time.perf_counter()
        rng = distributed.gather_objects(self._rank_state(), self.dist)
        if not self.dist.is_main:
            return
        payload = {"desc": self.desc, "key": self.key, "complete": complete, "step": self.step,
                   "drawn": self.drawn, "data_rng": self.data_rng,
                   "batch_digest": train_state.batch_digest(self.last_batch), "setup": self._setup(),
                   "modules": train_state.module_states(self.modules),
                   "params": [p.detach().cpu().clone() for p in self.loose],
                   "optimizer": map_tensors(lambda t: t.detach().cpu().clone(), self.optimizer.state_dict()), "scheduler": self.scheduler.state_dict(),
                   "scaler": self.scaler.state_dict(), "rng": rng,
                   "on_step": self.on_step.state_dict() if hasattr(self.on_step, "state_dict") else None,
                   "result": {"losses": self.result.losses, "parts": self.result.parts, "window": self.window,
                              "window_parts": self.window_parts,
                              "seconds": self.result.seconds if complete else self._seconds()}}
        Path(self.runtime.state_dir).mkdir(parents=True, exist_ok=True)
        train_state.save_checkpoint(self._path(), payload)
        self.checkpoints += 1
        self.checkpoint_seconds += time.perf_counter() - started

    def _rank_state(self) -> dict[str, Any]:
        """What differs between processes: random states, and with several processes each one's buffers
        (BatchNorm statistics of its shards, a TAID's own ``t``) and ``on_step`` state."""
        state = {"global": train_state.global_rng_state(),
                 "generators": train_state.generator_states(self.generators)}
        if self.dist.active:
            state["buffers"] = train_state.module_buffers(self.modules)
            if hasattr(self.on_step, "state_dict"):
                state["on_step"] = self.on_step.state_dict()
        return state

    def _restore(self, payload: dict[str, Any]) -> None:
        """Every state the checkpoint holds, back into this training (rank ``r`` takes its own random states)."""
        path = self._path()
        train_state.load_module_states(self.modules, payload["modules"])
        if len(payload["params"]) != len(self.loose):
            raise train_state.CheckpointError(f"training checkpoint {path} holds {len(payload['params'])} "
                                              f"parameters outside modules, this training {len(self.loose)}")
        with torch.no_grad():
            for param, saved in zip(self.loose, payload["params"]):
                param.copy_(saved)
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.scaler.load_state_dict(payload["scaler"])
        rng = payload["rng"]
        if len(rng) != self.dist.world_size:
            raise train_state.CheckpointError(f"training checkpoint {path} was written by {len(rng)} "
                                              f"processes, this run has {self.dist.world_size}")
        mine = rng[self.dist.rank]
        train_state.set_global_rng_state(mine["global"])
        train_state.set_generator_states(self.generators, mine["generators"])
        if "buffers" in mine:
            train_state.load_module_buffers(self.modules, mine["buffers"])
        on_step = mine.get("on_step", payload["on_step"])
        if on_step is not None and hasattr(self.on_step, "load_state_dict"):
            self.on_step.load_state_dict(on_step)
        saved = payload["result"]
        self.result.losses, self.result.parts = list(saved["losses"]), list(saved["parts"])
        self.window, self.window_parts = list(saved["window"]), list(saved["window_parts"])
        self.seconds_before = self.result.seconds = float(saved["seconds"])
        self.step, self.drawn = int(payload["step"]), int(payload["drawn"])

    def _reuse(self, payload: dict[str, Any]) -> TrainResult:
        """A finished training with the same inputs, setup and starting weights: its end state, not run again
        (the random states too, so what follows the training sees what it saw)."""
        self._restore(payload)
        self._to_device(torch.device("cpu"))
        self.result.reused = True
        self.result.iterations = self.schedule.iterations
        log.info("%s: reused a finished training with the same inputs (%s)", self.desc, self._path().name)
        return self.result

    def _resume(self, payload: dict[str, Any]) -> None:
        """Continue a killed training: replay the data order up to where it stopped, then restore every state."""
        started, drawn = time.perf_counter(), int(payload["drawn"])
        stopped = f"{self.desc}: the data order does not replay ({{}}); resume is not possible, run with --fresh"
        try:
            for _ in range(drawn):
                self._draw()
        except CompressError:
            raise train_state.CheckpointError(stopped.format(f"the batches ran out after {self.drawn} of the "
                                                             f"{drawn} drawn before")) from None
        if not torch.equal(self.data_rng, payload["data_rng"]) or \
                train_state.batch_digest(self.last_batch) != payload["batch_digest"]:
            raise train_state.CheckpointError(stopped.format(f"batch {drawn} differs from the one drawn before"))
        self._restore(payload)
        self.result.resumed_at = self.step
        log.info("%s: resumed at iteration %d of %d (data order replayed in %.1f s)", self.desc, self.step,
                 self.schedule.iterations, time.perf_counter() - started)


def _describe(setup: dict[str, Any]) -> str:
    """``2 processes (fp32 on cpu)``."""
    count = int(setup.get("processes", 1))
    return f"{count} process{'es' if count != 1 else ''} ({setup.get('precision')} on {setup.get('device')})"
