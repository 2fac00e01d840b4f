"""Helpers for the resume tests: run one training under a run's TrainingRuntime, interrupt it at a chosen
batch (an exception from the data iterator, as a crash would stop it), and compare what two trainings ended
with, tensor by tensor."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch

from compressor.distill.train_runtime import TrainingRuntime, training_runtime
from compressor.distill.trainer import TrainResult


class Crash(Exception):
    """Stands for the process dying between two training steps."""


def crashing(batches: Iterator, at: int) -> Iterator:
    """``batches``, but drawing batch number ``at`` (1-based) raises :class:`Crash`."""
    for index, batch in enumerate(batches, start=1):
        if index == at:
            raise Crash(f"crashed drawing batch {at}")
        yield batch


@dataclass
class Setup:
    """What one training needs: ``train(setup)`` runs it and returns its result; ``tensors()`` what it ended with."""

    run: Callable[[Callable[[Iterator], Iterator]], TrainResult]
    tensors: Callable[[], dict[str, Any]]
    extra: dict[str, Any] = field(default_factory=dict)


def runtime(state_dir: Path, *, resume: bool = False, reuse: bool = True, every: int = 5) -> TrainingRuntime:
    return TrainingRuntime(state_dir=state_dir, run_key="resume-test", resume=resume, reuse=reuse,
                           checkpoint_every=every)


def straight_and_resumed(build: Callable[[], Setup], tmp_path: Path, *, crash_at: int, every: int = 5):
    """Train once straight through, and once crashing at batch ``crash_at`` then resumed; returns
    ``(straight result, straight tensors, resumed result, resumed tensors, folder of the resumed run)``."""
    straight_dir, resumed_dir = tmp_path / "straight", tmp_path / "resumed"
    with training_runtime(runtime(straight_dir, every=every)):
        setup = build()
        straight = setup.run(lambda batches: batches)
        straight_tensors = setup.tensors()
    with training_runtime(runtime(resumed_dir, every=every)):
        setup = build()
        try:
            setup.run(lambda batches: crashing(batches, crash_at))
        except Crash:
            pass
        else:
            raise AssertionError("the training did not reach the crash")
    assert list(resumed_dir.glob("*.pt")), "no checkpoint was written before the crash"
    with training_runtime(runtime(resumed_dir, resume=True, every=every)):
        setup = build()
        resumed = setup.run(lambda batches: batches)
        resumed_tensors = setup.tensors()
    return straight, straight_tensors, resumed, resumed_tensors, resumed_dir


def assert_identical(a: Any, b: Any, where: str = "", skip: Sequence[str] = ("seconds",)) -> int:
    """``a`` and ``b`` hold the same values: tensors ``torch.equal`` (same dtype and shape), everything else
    ``==``; keys named in ``skip`` are not compared. Returns the number of tensors compared."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), where
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), f"{where} differs"
        return 1
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (where, sorted(map(str, a)), sorted(map(str, b)))
        return sum(assert_identical(a[k], b[k], f"{where}.{k}", skip) for k in a if k not in skip)
    if isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        return sum(assert_identical(x, y, f"{where}[{i}]", skip) for i, (x, y) in enumerate(zip(a, b)))
    assert a == b or (a != a and b != b), f"{where}: {a!r} != {b!r}"
    return 0


def final_checkpoint(folder: Path, desc: str) -> dict[str, Any]:
    """The one checkpoint file of training ``desc`` in ``folder`` (it must be complete)."""
    from compressor.distill.train_state import load_checkpoint

    files = sorted(folder.glob(f"{desc}-*.pt"))
    assert len(files) == 1, files
    payload = load_checkpoint(files[0])
    assert payload["complete"]
    return payload
