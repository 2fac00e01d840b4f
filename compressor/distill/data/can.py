"""CAN intrusion data for training: captures (Car-Hacking files or generated), chronological splits, windows.

Parsing and tokenisation are :mod:`compressor.runtime.detect`'s, the very code the bundle's detector runs.
A capture is one file (or one generated log) with one attack kind; its T rows get that kind's class. Each
capture is split in time into train / validation / test blocks separated by a gap, and windows never reach
across a block boundary, so no frame is seen by two splits.
"""
from __future__ import annotations

import itertools
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from compressor.core.errors import CompressError
from compressor.runtime.can_log import CanLogError, Frames, parse_lines
from compressor.runtime.can_tokens import (
    frame_tokens,
    id_table,
    sequence_length,
    window_tokens,
)

log = logging.getLogger(__name__)
CLASSES = ("normal", "dos", "fuzzy", "gear", "rpm")
SPLITS = ("train", "val", "test")
LOG_SUFFIXES = (".csv", ".txt", ".log")
_NAME_PATTERNS = (("dos", r"dos"), ("fuzzy", r"fuzz"), ("gear", r"gear"), ("rpm", r"rpm"),
                  (None, r"normal|attack[_-]?free|ambient|benign"))


class CanDataError(CompressError):
    """CAN data that is missing, malformed or cannot be labelled."""


@dataclass(frozen=True)
class Capture:
    """One log with one attack kind (``None``: attack-free); ``labels`` are class indices into CLASSES."""

    name: str
    attack: str | None
    frames: Frames
    malformed: int = 0

    @property
    def labels(self) -> np.ndarray:
        cls = CLASSES.index(self.attack) if self.attack else 0
        return np.where(self.frames.flag == 1, cls, 0).astype(np.int64)


def attack_from_name(path: str | Path) -> str | None:
    """The attack kind a Car-Hacking file name implies (``DoS_dataset.csv`` -> 'dos'; normal_run -> None)."""
    name = Path(path).name.lower()
    for attack, pattern in _NAME_PATTERNS:
        if re.search(pattern, name):
            return attack
    raise CanDataError(f"cannot tell the attack kind of {Path(path).name}: name it like DoS_/Fuzzy_/gear_/RPM_"
                       f"dataset.csv or normal_run_data.txt, or set data.attack in the recipe")


def load_capture(path: str | Path, *, attack: str = "auto", skip_malformed: bool = False,
                 max_frames: int | None = None) -> Capture:
    """Read one log (Car-Hacking CSV, normal_run_data.txt or candump), at most its first ``max_frames`` lines.

    >>> capture = load_capture("Fuzzy_dataset.csv")      # T rows become class 'fuzzy'
    """
    path = Path(path)
    kind = attack_from_name(path) if attack == "auto" else (None if attack == "normal" else attack)
    if kind is not None and kind not in CLASSES:
        raise CanDataError(f"data.attack '{attack}' is not one of: auto, normal, {', '.join(CLASSES[1:])}")
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            frames, bad = parse_lines(itertools.islice(handle, max_frames), source=str(path),
                                      skip_malformed=skip_malformed)
    except CanLogError as exc:
        hint = "" if skip_malformed else " (set data.skip_malformed: true to count and skip such rows)"
        raise CanDataError(f"{exc}{hint}") from None
    except OSError as exc:
        raise CanDataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(frames) == 0:
        raise CanDataError(f"{path} holds no CAN frames")
    if kind is not None and (frames.flag < 0).any():
        raise CanDataError(f"{path} has no per-frame T/R flags, so its {kind} frames cannot be labelled")
    if bad:
        log.warning("%s: skipped %d malformed row(s)", path, bad)
    frames.flag[frames.flag < 0] = 0
    return Capture(path.name, kind, frames, bad)


def load_captures(path: str | Path, **kwargs) -> list[Capture]:
    """One capture per log file: ``path`` is a file or a folder of ``.csv``/``.txt``/``.log`` files."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in LOG_SUFFIXES and p.is_file())
        if not files:
            raise CanDataError(f"{path} holds no .csv, .txt or .log CAN logs")
        return [load_capture(f, **kwargs) for f in files]
    if not path.is_file():
        raise CanDataError(f"data not found: {path}")
    return [load_capture(path, **kwargs)]


def generated_captures(durations: Mapping[str, float], *, seed: int, injected_fraction: float = 0.14) -> list[Capture]:
    """One generated capture per ``{attack or 'normal': seconds}`` entry, each from its own seed."""
    from compressor.distill.data.can_generator import GeneratorConfig, generate

    captures = []
    for i, (attack, seconds) in enumerate(durations.items()):
        kind = None if attack == "normal" else attack
        config = GeneratorConfig(duration_s=seconds, attack=kind, injected_fraction=injected_fraction,
                                 seed=seed * 101 + i, start_ts=1478190000.0 + 3600 * i)
        captures.append(Capture(f"generated-{attack}", kind, generate(config)))
    return captures


def split_targets(count: int, *, window: int, fractions: Sequence[float] = (0.6, 0.2, 0.2),
                  gap: int = 0) -> dict[str, np.ndarray]:
    """Target frame indices of each split of a ``count``-frame capture, in time order.

    Split k covers a block of frames; windows need ``window - 1`` earlier frames of the same block, and
    ``gap`` frames are dropped between blocks, so no frame belongs to windows of two splits.
    """
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
        raise CanDataError(f"data.split must be three non-negative fractions summing to 1, got {list(fractions)}")
    edges = np.round(np.cumsum([0.0, *fractions]) * count).astype(int)
    out = {}
    for k, name in enumerate(SPLITS):
        start = edges[k] + (gap if k else 0)
        out[name] = np.arange(start + window - 1, edges[k + 1], dtype=np.int64)
    return out


def frames_needed(*, window: int, fractions: Sequence[float], gap: int) -> int | str:
    """The fewest frames a capture needs for one window in every split (text when no count is enough)."""
    if min(fractions) <= 0:
        return "a non-zero fraction for each split"
    count = int((window + gap) / min(fractions))
    for count in range(max(count // 2, window), count + 10_000):
        if all(len(t) for t in split_targets(count, window=window, fractions=fractions, gap=gap).values()):
            return count
    return count


@dataclass
class WindowSet:
    """Token windows (int32, cast to int64 per batch) and their target frames' class labels."""

    tokens: np.ndarray
    labels: np.ndarray
    sources: np.ndarray  # capture index of each window

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, index) -> tuple[np.ndarray, np.ndarray]:
        """``(tokens int64, labels int64)`` of the windows at ``index``."""
        return self.tokens[index].astype(np.int64), self.labels[index]

    def class_counts(self) -> dict[str, int]:
        return {name: int(n) for name, n in zip(CLASSES, np.bincount(self.labels, minlength=len(CLASSES)))}


def id_vocabulary(captures: Sequence[Capture], splits: Sequence[dict[str, np.ndarray]],
                  min_share: float | None) -> list[int] | None:
    """IDs making up at least ``min_share`` of the training frames (None: every 11-bit ID is its own token).

    Rarer IDs share UNK_ID: a fuzzer's random IDs are each seen a handful of times, too few to train an
    embedding of their own, while the bus's periodic IDs (and a flood's) are seen thousands of times.
    """
    if min_share is None:
        return None
    ids = np.concatenate([c.frames.can_id[:s["train"].max() + 1] for c, s in zip(captures, splits)
                          if len(s["train"])])
    values, counts = np.unique(ids[ids < 2048], return_counts=True)
    return values[counts >= min_share * len(ids)].tolist()


def build_windows(captures: Sequence[Capture], *, window: int, context: str = "ids",
                  fractions: Sequence[float] = (0.6, 0.2, 0.2), gap: int = 0,
                  max_windows: Mapping[str, int | None] | None = None,
                  id_min_share: float | None = None) -> tuple[dict[str, WindowSet], list[int] | None]:
    """Windows of every split over all captures, and the ID vocabulary (from the training blocks only);
    ``max_windows[split]`` keeps an evenly spaced subset."""
    splits = [split_targets(len(c.frames), window=window, fractions=fractions, gap=gap) for c in captures]
    for name in SPLITS:
        if not any(len(s[name]) for s in splits):
            needed = frames_needed(window=window, fractions=fractions, gap=gap)
            largest = max(len(c.frames) for c in captures)
            raise CanDataError(f"the {name} split holds no windows: the largest capture has {largest} frame(s); "
                               f"with data.window {window}, data.gap {gap} and data.split {list(fractions)} a "
                               f"capture needs at least {needed}")
    vocab = id_vocabulary(captures, splits, id_min_share)
    table, chosen = id_table(vocab), {}
    for name in SPLITS:  # pick the windows first, so a multi-million-frame file is tokenised only where needed
        sources = np.concatenate([np.full(len(s[name]), c) for c, s in enumerate(splits)])
        targets = np.concatenate([s[name] for s in splits])
        limit = (max_windows or {}).get(name)
        if limit is not None and len(targets) > limit:
            keep = np.unique(np.linspace(0, len(targets) - 1, limit).round().astype(np.int64))
            sources, targets = sources[keep], targets[keep]
        if len(targets) == 0:
            raise CanDataError(f"the {name} split holds no windows: use more data or a shorter window")
        chosen[name] = (sources, targets)
    sets = {name: WindowSet(np.empty((len(t), sequence_length(window, context)), np.int32),
                            np.empty(len(t), np.int64), s) for name, (s, t) in chosen.items()}
    for c, capture in enumerate(captures):
        tokens, labels = frame_tokens(capture.frames, table), capture.labels
        for name, (sources, targets) in chosen.items():
            mine = sources == c
            sets[name].tokens[mine] = window_tokens(tokens, targets[mine], window, context)
            sets[name].labels[mine] = labels[targets[mine]]
    return sets, vocab
