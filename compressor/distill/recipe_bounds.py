"""The range of every number a recipe sets, checked when it loads (before any training).

Rules go by the setting's name, the same in every task: counts and sizes (``batch``, ``*_batch``, ``scale``,
``window``, ``max_*``...) are at least 1, rates and temperatures are above 0, fractions lie in 0..1, seeds in
0..2**32-1 (what numpy and torch accept), and every other number is at least 0 (``iterations: 0`` keeps its
meaning: no training). A tuple's items and a mapping's values take the rule of their setting's name.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

from compressor.distill.config import ConfigError
from compressor.runtime.measurement import (
    MAX_DURATION_S,
    MAX_ITERATIONS,
    MAX_THREADS_CAP,
)

SEED_MAX = 2**32 - 1  # numpy's SeedSequence-free seeding and torch.manual_seed both take 0..2**32-1 safely
COUNT_MAX = 2**31 - 1  # sizes and counts beyond this overflow 32-bit indices in torch and the runtimes


@dataclass(frozen=True)
class Bound:
    """``low`` .. ``high``; ``open_low``/``open_high`` exclude the ends."""

    low: float
    high: float = COUNT_MAX
    open_low: bool = False
    open_high: bool = False

    def problem(self, value: float) -> str | None:
        """Why ``value`` is out of range, or None."""
        low_ok = value > self.low if self.open_low else value >= self.low
        high_ok = value < self.high if self.open_high else value <= self.high
        if low_ok and high_ok:
            return None
        if self.high == COUNT_MAX and not self.open_high:
            if isinstance(value, int) and self.open_low and self.low == 0:
                return f"must be at least 1, got {value}"
            return f"must be {'above' if self.open_low else 'at least'} {self.low:g}, got {value:g}"
        left, right = "(" if self.open_low else "[", ")" if self.open_high else "]"
        return f"must be in {left}{self.low:g}, {self.high:g}{right}, got {value:g}"


POSITIVE = Bound(0, open_low=True)
NON_NEGATIVE = Bound(0)
FRACTION = Bound(0, 1)
SEED = Bound(0, SEED_MAX)

# Settings that must be above zero (a count of 0, a batch of 0, a rate of 0 cannot work).
_POSITIVE_NAMES = frozenset({
    "batch", "lr", "scale", "repeat", "patch", "window", "temperature", "simcse_temperature", "profile_seconds",
    "profile_iterations", "profile_threads", "threads", "compare_count", "compare_batches", "calibration_samples",
    "val_max_size", "block_rank", "head_rank", "block_alpha", "head_alpha", "channels", "image_size", "length",
    "val_length", "width", "height", "layers", "intermediate", "train_sentences", "heldout_sentences",
    "retrieval_pairs", "profile_tokens", "train_sequences", "val_sequences", "block", "grad_clip", "rho",
    "target_side", "seconds",
})
_SPECIAL = {
    "seed": SEED,
    "val_fraction": Bound(0, 1, open_low=True, open_high=True),
    "dropout": Bound(0, 1, open_high=True),
    "injected_fraction": FRACTION, "id_min_share": FRACTION, "ratio": FRACTION, "occluded_threshold": FRACTION,
    "split": FRACTION,
    # the profiler's own limits (compress profile and the bundles' run.py take no more)
    "profile_seconds": Bound(0, MAX_DURATION_S, open_low=True),
    "profile_iterations": Bound(1, MAX_ITERATIONS),
    "profile_threads": Bound(1, MAX_THREADS_CAP),  # the per-CPU limit is checked where it runs
}


def bound_for(name: str) -> Bound:
    """The range a setting called ``name`` must lie in."""
    if name in _SPECIAL:
        return _SPECIAL[name]
    if name in _POSITIVE_NAMES or name.endswith(("_batch", "_lr", "_samples")) or name.startswith("max_"):
        return POSITIVE
    return NON_NEGATIVE


def check_bounds(value: Any, path: str) -> None:
    """Raise a one-line ConfigError naming the first number under ``value`` (a recipe's settings dataclass,
    or its deploy section) that is outside its setting's range."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            if f.metadata.get("config") == "rest":
                continue  # free-form keys, validated by their owner (a target's options, a loss's settings)
            _check(getattr(value, f.name), f.name, f"{path}.{f.name}" if path else f.name)


def _check(value: Any, name: str, path: str) -> None:
    if value is None or isinstance(value, (bool, str)):
        return
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{path}: must be a finite number, got {value}")
        problem = bound_for(name).problem(value)
        if problem:
            raise ConfigError(f"{path}: {problem}")
    elif dataclasses.is_dataclass(value):
        check_bounds(value, path)
    elif isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            _check(item, name, f"{path}[{i}]")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _check(item, name, f"{path}.{key}")
