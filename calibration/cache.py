"""Calibration statistics cache, keyed by the model's and the data's hashes (and the method)."""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from compressor.calibration.files import CalibrationError
from compressor.core.files import sha256_file

log = logging.getLogger(__name__)


def data_hash(feeds: Sequence[dict[str, np.ndarray]]) -> str:
    """sha256 over every sample's names, dtypes, shapes and bytes, in order."""
    digest = hashlib.sha256()
    for feed in feeds:
        for name in sorted(feed):
            array = np.ascontiguousarray(feed[name])
            digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
            digest.update(array.tobytes())
    return digest.hexdigest()


def cache_dir() -> Path:
    """``$EDGE_COMPRESS_CACHE`` or ``~/.cache/edge-compress``, with a ``calibration`` subfolder."""
    root = Path(os.environ.get("EDGE_COMPRESS_CACHE", Path.home() / ".cache" / "edge-compress"))
    folder = root / "calibration"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def cache_path(model_path: str | Path, feeds: Sequence[dict[str, np.ndarray]], method: str) -> Path:
    """Where the activation ranges of ``model_path`` calibrated on ``feeds`` with ``method`` live."""
    key = f"{sha256_file(model_path)[:16]}-{data_hash(feeds)[:16]}-{method.lower()}"
    return cache_dir() / f"{key}.json"


def usable_cache(path: Path, method: str) -> bool:
    """True when ``path`` holds a calibration cache ONNX Runtime can use for ``method``. A cache that is
    unreadable, not ONNX Runtime's format, of another method or holding non-finite ranges is named in a
    warning and removed, so the ranges are calibrated again (and the cache rewritten) instead of every
    later INT8 build of that model and data failing on it."""
    if not path.is_file():
        return False
    problem = cache_problem(path, method)
    if problem is None:
        return True
    log.warning("ignoring the corrupt calibration cache %s (%s); calibrating again", path, problem)
    discard_cache(path)
    return False


def discard_cache(path: Path) -> None:
    """Remove a cache file that cannot be used (it is rewritten by the next calibration)."""
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise CalibrationError(f"the calibration cache {path} is corrupt and cannot be removed: "
                               f"{exc.strerror or exc}") from None


def cache_problem(path: Path, method: str) -> str | None:
    """What is wrong with the calibration cache at ``path`` for ``method`` (``minmax`` ...), or None."""
    try:
        from onnxruntime.quantization.calibrate import load_tensors_data

        ranges = load_tensors_data(path)
    except (ValueError, KeyError, TypeError, AttributeError, OSError, RecursionError) as exc:
        return f"unreadable: {type(exc).__name__}"
    if not isinstance(ranges.data, dict) or not ranges.data:
        return "it holds no ranges"
    if getattr(ranges.calibration_method, "name", str(ranges.calibration_method)).lower() != method.lower():
        return f"it was made with {ranges.calibration_method}, not {method}"
    for name, data in ranges.data.items():
        for attr in ("lowest", "highest", "avg", "std", "hist_edges", "hist"):
            value = getattr(data, attr, None)
            if value is None:
                continue
            try:
                finite = bool(np.all(np.isfinite(np.asarray(value, dtype=np.float64))))
            except (TypeError, ValueError):
                finite = False
            if not finite:
                return f"tensor '{name}' has a non-numeric or non-finite {attr}"
        if method.lower() == "minmax" and not hasattr(data, "range_value"):
            return f"tensor '{name}' has no range"
    return None
