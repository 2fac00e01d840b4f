"""Calibration statistics cache, keyed by the model's and the data's hashes (and the method)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from compressor.core.files import sha256_file


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
