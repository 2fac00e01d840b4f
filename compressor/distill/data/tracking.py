"""Tracking sequences: frames plus one box per frame, from UAV123-style or GOT-10k-style folders.

- UAV123 / OTB style: ``SEQ/groundtruth_rect.txt`` (``x,y,w,h`` per line; commas, tabs or spaces;
  ``NaN`` lines mark frames without the target) and the frames in ``SEQ/img/`` or ``SEQ/`` itself.
- GOT-10k style: ``SEQ/groundtruth.txt`` (``x,y,w,h``), optional ``SEQ/absence.label`` (1 = target absent)
  and ``SEQ/cover.label`` (0..8, visible ratio in eighths), frames ``SEQ/00000001.jpg``...
- Either may carry ``SEQ/occlusion.label``: the occluded fraction of the target box per frame in [0, 1]
  (the built-in semi-synthetic sequences write it; GOT-10k's ``cover.label`` gives ``1 - cover / 8``).

Boxes are 0-based ``(x, y, w, h)`` in pixels. Frames are read lazily (PIL) or held in memory.

>>> sequences = load_sequences("data/UAV123_small")      # doctest: +SKIP
>>> sequences[0].boxes.shape                             # doctest: +SKIP
(120, 4)
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from compressor.distill.data.sr import IMAGE_SUFFIXES, DatasetError

UAV_GT, GOT_GT = "groundtruth_rect.txt", "groundtruth.txt"
_SPLIT = re.compile(r"[,\s]+")


class SequenceFormatError(DatasetError):
    """A tracking sequence whose ground truth or frames cannot be read."""


@dataclass
class TrackingSequence:
    """Frames (paths or an N x H x W x 3 uint8 array), boxes (N x 4), visibility and occlusion per frame."""

    name: str
    frames: Sequence[Path] | np.ndarray
    boxes: np.ndarray
    absent: np.ndarray = None
    occlusion: np.ndarray | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, np.float64)
        if self.absent is None:
            self.absent = np.zeros(len(self.boxes), bool)
        self.absent = np.asarray(self.absent, bool) | ~np.all(np.isfinite(self.boxes), axis=1) \
            | (np.nan_to_num(self.boxes[:, 2]) <= 0) | (np.nan_to_num(self.boxes[:, 3]) <= 0)

    def __len__(self) -> int:
        return len(self.boxes)

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` as H x W x 3 uint8."""
        if isinstance(self.frames, np.ndarray):
            return self.frames[index]
        if index not in self._cache:
            if len(self._cache) >= 8:  # a few frames per sequence: pairs come from nearby frames
                self._cache.clear()
            self._cache[index] = read_image(self.frames[index])
        return self._cache[index]

    @property
    def visible(self) -> np.ndarray:
        """Indices of frames where the target is present."""
        return np.flatnonzero(~self.absent)


def read_image(path: Path) -> np.ndarray:
    """An image file as H x W x 3 uint8 (grey is repeated, alpha dropped)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise SequenceFormatError(f"cannot read frame {path}: {exc}") from None


def read_boxes(path: Path) -> np.ndarray:
    """N x 4 boxes from a ground-truth file; ``NaN`` entries are kept (absent target)."""
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        text = line.strip()
        if not text:
            continue
        parts = [p for p in _SPLIT.split(text) if p]
        try:
            values = [float(p) for p in parts]
        except ValueError:
            values = []
        if len(values) != 4:
            raise SequenceFormatError(f"{path} line {number}: expected 4 numbers x,y,w,h, got '{text[:40]}'")
        rows.append(values)
    if not rows:
        raise SequenceFormatError(f"{path} holds no boxes")
    return np.asarray(rows, np.float64)


def read_labels(path: Path, count: int, *, low: float, high: float) -> np.ndarray:
    """One number per line, ``count`` lines, each within [low, high]."""
    try:
        values = np.asarray([float(v) for v in path.read_text().split()], np.float64)
    except ValueError:
        raise SequenceFormatError(f"{path}: expected one number per line") from None
    if len(values) != count:
        raise SequenceFormatError(f"{path} has {len(values)} lines but the ground truth has {count} boxes")
    if np.any(values < low) or np.any(values > high):
        raise SequenceFormatError(f"{path}: values must lie in [{low:g}, {high:g}]")
    return values


def _frame_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def load_sequence(folder: str | Path) -> TrackingSequence:
    """One UAV123-style or GOT-10k-style sequence folder."""
    folder = Path(folder)
    if (folder / UAV_GT).is_file():
        boxes = read_boxes(folder / UAV_GT)
        frames = _frame_files(folder / "img") if (folder / "img").is_dir() else _frame_files(folder)
        absent = None
    elif (folder / GOT_GT).is_file():
        boxes = read_boxes(folder / GOT_GT)
        frames = _frame_files(folder)
        absence = folder / "absence.label"
        absent = read_labels(absence, len(boxes), low=0, high=1) > 0 if absence.is_file() else None
    else:
        raise SequenceFormatError(f"{folder} has neither {UAV_GT} nor {GOT_GT}")
    if len(frames) != len(boxes):
        raise SequenceFormatError(f"{folder.name}: {len(frames)} frames but {len(boxes)} ground-truth boxes")
    if len(boxes) < 2:
        raise SequenceFormatError(f"{folder.name}: a sequence needs at least 2 frames, got {len(boxes)}")
    sequence = TrackingSequence(folder.name, frames, boxes, absent, _occlusion(folder, len(boxes)))
    if sequence.absent[0]:
        raise SequenceFormatError(f"{folder.name}: the target must be visible in the first frame")
    return sequence


def _occlusion(folder: Path, count: int) -> np.ndarray | None:
    if (folder / "occlusion.label").is_file():
        return read_labels(folder / "occlusion.label", count, low=0, high=1)
    if (folder / "cover.label").is_file():
        return 1.0 - read_labels(folder / "cover.label", count, low=0, high=8) / 8.0
    return None


def is_sequence_folder(folder: Path) -> bool:
    return (folder / UAV_GT).is_file() or (folder / GOT_GT).is_file()


def load_sequences(root: str | Path) -> list[TrackingSequence]:
    """Every sequence under ``root`` (a sequence folder itself, or a folder of sequence folders), by name."""
    root = Path(root)
    if not root.is_dir():
        raise SequenceFormatError(f"tracking data folder not found: {root}")
    if is_sequence_folder(root):
        return [load_sequence(root)]
    folders = sorted(p for p in root.iterdir() if p.is_dir() and is_sequence_folder(p))
    if not folders:
        raise SequenceFormatError(f"no tracking sequences in {root} (folders with {UAV_GT} or {GOT_GT})")
    return [load_sequence(p) for p in folders]


def write_got10k(sequence: TrackingSequence, folder: str | Path) -> Path:
    """Write ``sequence`` as a GOT-10k-style folder (PNG frames, groundtruth, absence and occlusion labels)."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(len(sequence)):
        Image.fromarray(sequence.frame(i)).save(folder / f"{i + 1:08d}.png")
    np.savetxt(folder / GOT_GT, sequence.boxes, fmt="%.4f", delimiter=",")
    np.savetxt(folder / "absence.label", sequence.absent.astype(int), fmt="%d")
    if sequence.occlusion is not None:
        np.savetxt(folder / "occlusion.label", sequence.occlusion, fmt="%.4f")
    return folder
