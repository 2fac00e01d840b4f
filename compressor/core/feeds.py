"""Input feeds for parity and profiling: random within declared ranges, or read from a user .npz."""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from compressor.core.errors import InputSpecError
from compressor.core.tensor_spec import TensorSpec

Feed = Mapping[str, np.ndarray]
"""One set of model inputs: input name to array. Calibration, parity and profiling all speak it."""


def random_feed(specs: Sequence[TensorSpec], *, batch: int | None = None,
                rng: np.random.Generator | None = None) -> Feed:
    """One feed with values drawn uniformly from each spec's range (integers: [low, high) ).

    >>> feed = random_feed([TensorSpec.parse("x:Nx3x8x8")], batch=2)
    >>> feed["x"].shape
    (2, 3, 8, 8)
    """
    rng = rng or np.random.default_rng(0)
    feed: dict[str, np.ndarray] = {}
    for spec in specs:
        shape = spec.concrete_shape(batch)
        low, high = spec.value_range
        if spec.dtype.startswith("float"):
            feed[spec.name] = rng.uniform(low, high, size=shape).astype(spec.dtype)
        elif spec.dtype == "bool":
            feed[spec.name] = rng.integers(0, 2, size=shape).astype(bool)
        else:
            feed[spec.name] = rng.integers(int(low), max(int(high), int(low) + 1), size=shape).astype(spec.dtype)
    return feed


def random_feeds(specs: Sequence[TensorSpec], *, count: int, batches: Sequence[int] = (1,), seed: int = 0) -> list[Feed]:
    """``count`` random feeds for each batch size, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    return [random_feed(specs, batch=b, rng=rng) for b in batches for _ in range(count)]


def load_npz_feeds(path: str | Path, specs: Sequence[TensorSpec]) -> list[Feed]:
    """Feeds from a user ``.npz``: one array per input name; a leading axis may stack several samples.

    Arrays of the input's rank form one feed; arrays of rank + 1 are split along axis 0 into feeds.
    """
    path = Path(path)
    if not path.is_file():
        raise InputSpecError(f"inputs file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise InputSpecError(f"{path} is not a readable .npz file ({exc})") from None
    missing = [s.name for s in specs if s.name not in arrays]
    if missing:
        raise InputSpecError(f"{path} lacks array(s) for input(s): {', '.join(missing)} (has: {', '.join(arrays)})")
    stacked = {s.name: arrays[s.name].ndim == len(s.shape) + 1 for s in specs}
    if len(set(stacked.values())) > 1:
        raise InputSpecError(f"{path}: stack all inputs along a sample axis, or none")
    if not any(stacked.values()):
        return [{s.name: arrays[s.name] for s in specs}]
    counts = {arrays[s.name].shape[0] for s in specs}
    if len(counts) != 1:
        raise InputSpecError(f"{path}: inputs hold different sample counts {sorted(counts)}")
    return [{s.name: arrays[s.name][i] for s in specs} for i in range(counts.pop())]
