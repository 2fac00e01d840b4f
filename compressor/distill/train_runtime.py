"""How this run trains: device, mixed precision, processes, checkpoints; set once by the pipeline, read by every
:func:`~compressor.distill.trainer.train` call of every task (so the tasks need not thread it through)."""
from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch

from compressor.distill.config import ConfigError
from compressor.distill.distributed import SINGLE, DistContext

PRECISIONS = ("fp32", "bf16", "fp16", "auto")
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class TrainingRuntime:
    """Where and how training runs. ``state_dir`` holds resumable checkpoints and finished trainings (keyed by
    their inputs); ``run_key`` fingerprints what the run's training depends on beyond the models' starting
    weights (the recipe without ``deploy``, data, seed, code version)."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    precision: str = "fp32"
    dist: DistContext = SINGLE
    state_dir: Path | None = None
    run_key: str = ""
    role_keys: Mapping[str, str] = field(default_factory=dict)  # narrower keys by training name (the teacher's)
    resume: bool = False
    reuse: bool = True
    checkpoints_used: set[str] = field(default_factory=set, compare=False)  # names this run read or wrote
    checkpoint_every: int = 0  # iterations; 0: about twenty checkpoints per training

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)

    def to_dict(self) -> dict[str, Any]:
        """What the report records about training."""
        return {"device": str(self.device), "precision": self.precision, **self.dist.to_dict(),
                "resume": self.resume, "reuse": self.reuse}


_CURRENT: contextvars.ContextVar[TrainingRuntime] = contextvars.ContextVar("training_runtime",
                                                                           default=TrainingRuntime())


def current_runtime() -> TrainingRuntime:
    """The runtime set by the enclosing :func:`training_runtime` (defaults: CPU, fp32, one process)."""
    return _CURRENT.get()


@contextlib.contextmanager
def training_runtime(runtime: TrainingRuntime) -> Iterator[TrainingRuntime]:
    """Make ``runtime`` the one :func:`current_runtime` returns inside the block."""
    token = _CURRENT.set(runtime)
    try:
        yield runtime
    finally:
        _CURRENT.reset(token)


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when present) as a device; under torchrun ``cuda``
    means this process's local GPU. One line for a malformed name (checked first, on any machine), and when
    CUDA is asked for and absent."""
    text = (name or "cpu").strip().lower()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return torch.device("cpu")
    if text != "cuda" and not text.startswith("cuda:"):
        raise ConfigError(f"--device {name}: expected cpu, cuda, cuda:N or auto")
    index = local_rank if text == "cuda" else _device_index(text, name)
    if not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: this machine has no CUDA device (torch {torch.__version__} "
                          f"sees none); use --device cpu")
    if index >= torch.cuda.device_count():
        raise ConfigError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    return torch.device("cuda", index)


def _device_index(text: str, name: str) -> int:
    try:
        index = int(text.split(":", 1)[1])
    except ValueError:
        raise ConfigError(f"--device {name}: expected cuda:N with N a GPU index") from None
    if index < 0:
        raise ConfigError(f"--device {name}: a GPU index is 0 or more")
    return index


def resolve_precision(name: str, device: torch.device, cpu_flags: frozenset[str] | None = None) -> str:
    """The training precision for ``device``: fp32, bf16 (autocast; CPUs need bf16 units, GPUs bf16 support),
    fp16 (autocast with loss scaling; GPUs only), or auto (bf16 where the hardware has it, else fp32)."""
    text = (name or "fp32").strip().lower()
    if text not in PRECISIONS:
        raise ConfigError(f"--train-precision {name}: expected one of {', '.join(PRECISIONS)}")
    has_bf16 = _has_bf16(device, cpu_flags)
    if text == "auto":
        return "bf16" if has_bf16 else "fp32"
    if text == "bf16" and not has_bf16:
        where = ("this CPU reports none of " + ", ".join(CPU_BF16_FLAGS) if device.type == "cpu"
                 else f"{torch.cuda.get_device_name(device)} does not support bf16")
        raise ConfigError(f"--train-precision bf16: {where}; use fp32")
    if text == "fp16" and device.type != "cuda":
        raise ConfigError("--train-precision fp16: mixed fp16 training needs a CUDA device (use bf16 on CPUs "
                          "with bf16 units)")
    return text


def _has_bf16(device: torch.device, cpu_flags: frozenset[str] | None) -> bool:
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if cpu_flags is None:
        from compressor.core.machine import cpu_flags as read_flags

        cpu_flags = frozenset(read_flags())
    return any(flag in cpu_flags for flag in CPU_BF16_FLAGS)
