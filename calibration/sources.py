"""Calibration data sources. The one contract: a list of feed dicts ``{input_name: np.ndarray}``.

Sources: arrays already in memory, a folder of ``.npy``/``.npz``/images, a user callable, or a
recipe task's own data (representative samples of its training set). Every source is validated.
"""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from compressor.calibration.files import CalibrationError, read_calibration_file
from compressor.core.feeds import Feed
from compressor.core.tensor_spec import TensorSpec
from compressor.core.user_code import load_callable

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
MAX_CALLABLE_SAMPLES = 65536  # a calibration function's generator is read up to this many feeds
__all__ = ["CalibrationError", "from_callable", "from_folder", "representative", "validate_feeds"]


def validate_feeds(feeds: Iterable[Mapping[str, np.ndarray]], specs: Sequence[TensorSpec]) -> list[Feed]:
    """Check names, dtypes, shapes and finiteness of every feed; return them as a list."""
    checked = []
    names = {s.name for s in specs}
    for index, feed in enumerate(feeds):
        if not isinstance(feed, Mapping):
            raise CalibrationError(f"calibration sample {index} is {_kind(feed)}, not a feed dict "
                                   f"{{input_name: array}}")
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
    data = read_calibration_file(path)
    if isinstance(data, dict):
        return {s.name: _with_batch(data[s.name], s) for s in specs if s.name in data}
    if data.ndim == 3 and path.suffix.lower() in IMAGE_SUFFIXES:
        data = data.transpose(2, 0, 1)
    return {specs[0].name: _with_batch(data, specs[0])}


def _with_batch(array: np.ndarray, spec: TensorSpec) -> np.ndarray:
    try:
        array = array.astype(spec.dtype, copy=False)
    except (TypeError, ValueError) as exc:
        raise CalibrationError(f"calibration array for '{spec.name}' cannot be read as {spec.dtype}: {exc}") from None
    return array[None] if array.ndim == len(spec.shape) - 1 else array


def from_callable(spec_text: str, specs: Sequence[TensorSpec], *, limit: int | None = None) -> list[Feed]:
    """Samples from a user function ``module:function`` or ``file.py:function`` returning an iterable of feeds.

    A function that raises, or returns something other than feed dicts (an array, one dict, a model), is one
    CalibrationError line naming the function and what it did."""
    function: Callable[[], Iterable[Feed]] = load_callable(spec_text, error=CalibrationError,
                                                          what="calibration callable")
    where = f"calibration function {spec_text}"
    try:
        result = function()
        problem = _not_feeds(result)
        if problem:
            raise CalibrationError(f"{where} returned {problem}; it must return a list (or iterable) of feed "
                                   f"dicts {{input_name: array}}")
        feeds = list(itertools.islice(result, limit or MAX_CALLABLE_SAMPLES))
    except CalibrationError:
        raise
    except Exception as exc:  # the user's code: any exception is theirs to fix, reported in one line
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CalibrationError(f"{where} raised {type(exc).__name__}{f': {message}' if message else ''}") from None
    try:
        return validate_feeds(feeds, specs)
    except CalibrationError as exc:
        raise CalibrationError(f"{where}: {exc}") from None


def _kind(value: Any) -> str:
    """A value described for an error: ``an array of shape (1, 3)``, ``a model (Sequential)``, ``a str``."""
    if isinstance(value, np.ndarray) or type(value).__name__ == "Tensor":
        return f"an array of shape {tuple(value.shape)}"
    if callable(value) and hasattr(value, "parameters") and hasattr(value, "state_dict"):
        return f"a model ({type(value).__name__})"
    return f"a {type(value).__name__}"


def _not_feeds(result: Any) -> str | None:
    """What is wrong with a calibration function's result at the top level, or None."""
    if isinstance(result, (Mapping, np.ndarray, str, bytes)) or type(result).__name__ == "Tensor" \
            or (callable(result) and hasattr(result, "state_dict")):
        return "one feed dict" if isinstance(result, Mapping) else _kind(result)
    if result is None or not isinstance(result, Iterable):
        return "None" if result is None else _kind(result)
    return None


def representative(feeds: Sequence[Feed], count: int, *, seed: int = 0) -> list[Feed]:
    """``count`` samples drawn without replacement, spread over the whole source (not its first items)."""
    if count >= len(feeds):
        return list(feeds)
    index = np.sort(np.random.default_rng(seed).choice(len(feeds), size=count, replace=False))
    return [feeds[i] for i in index]
