"""Calibration data sources. The one contract: a list of feed dicts ``{input_name: np.ndarray}``.

Sources: arrays already in memory, a folder of ``.npy``/``.npz``/images, a user callable, or a
recipe task's own data (representative samples of its training set). Every source is validated.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from compressor.core.errors import CompressError
from compressor.core.feeds import Feed
from compressor.core.tensor_spec import TensorSpec
from compressor.core.user_code import load_callable

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


class CalibrationError(CompressError):
    """Calibration data that is empty, non-finite, or does not fit the model's inputs."""


def validate_feeds(feeds: Iterable[Mapping[str, np.ndarray]], specs: Sequence[TensorSpec]) -> list[Feed]:
    """Check names, dtypes, shapes and finiteness of every feed; return them as a list."""
    checked = []
    names = {s.name for s in specs}
    for index, feed in enumerate(feeds):
        if set(feed) != names:
            raise CalibrationError(f"calibration sample {index} has inputs {sorted(feed)}, "
                                   f"the model takes {sorted(names)}")
        for spec in specs:
            array = np.asarray(feed[spec.name])
            problem = spec.check(array)
            if problem:
                raise CalibrationError(f"calibration sample {index}: {problem}")
            if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
                raise CalibrationError(f"calibration sample {index}: input '{spec.name}' holds NaN or Inf")
        checked.append({k: np.ascontiguousarray(v) for k, v in feed.items()})
    if not checked:
        raise CalibrationError("no calibration samples: give at least one")
    return checked


def from_folder(folder: str | Path, specs: Sequence[TensorSpec], *, limit: int | None = None) -> list[Feed]:
    """Samples from ``.npz`` files (one array per input), ``.npy`` files or images (single-input models).

    Images become float32 NCHW in [0, 1] with batch 1; arrays without a batch axis get one.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CalibrationError(f"calibration folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".npy", ".npz", *IMAGE_SUFFIXES))
    if not files:
        raise CalibrationError(f"no .npy, .npz or image files in {folder}")
    if len(specs) != 1 and any(p.suffix.lower() != ".npz" for p in files):
        raise CalibrationError(f"a model with {len(specs)} inputs needs .npz calibration files (one array per input)")
    feeds = [_read_sample(path, specs) for path in files[:limit]]
    return validate_feeds(feeds, specs)


def _read_sample(path: Path, specs: Sequence[TensorSpec]) -> Feed:
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                return {s.name: _with_batch(data[s.name], s) for s in specs if s.name in data.files} or {}
        if suffix == ".npy":
            return {specs[0].name: _with_batch(np.load(path, allow_pickle=False), specs[0])}
        from PIL import Image

        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        return {specs[0].name: _with_batch(array.transpose(2, 0, 1), specs[0])}
    except (OSError, ValueError, KeyError) as exc:
        raise CalibrationError(f"cannot read calibration file {path}: {exc}") from None


def _with_batch(array: np.ndarray, spec: TensorSpec) -> np.ndarray:
    array = array.astype(spec.dtype, copy=False)
    return array[None] if array.ndim == len(spec.shape) - 1 else array


def from_callable(spec_text: str, specs: Sequence[TensorSpec], *, limit: int | None = None) -> list[Feed]:
    """Samples from a user function ``module:function`` or ``file.py:function`` returning an iterable of feeds."""
    function: Callable[[], Iterable[Feed]] = load_callable(spec_text, error=CalibrationError,
                                                          what="calibration callable")
    feeds = list(function())
    return validate_feeds(feeds[:limit] if limit else feeds, specs)


def representative(feeds: Sequence[Feed], count: int, *, seed: int = 0) -> list[Feed]:
    """``count`` samples drawn without replacement, spread over the whole source (not its first items)."""
    if count >= len(feeds):
        return list(feeds)
    index = np.sort(np.random.default_rng(seed).choice(len(feeds), size=count, replace=False))
    return [feeds[i] for i in index]
