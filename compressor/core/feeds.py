"""Input feeds for parity and profiling: random within declared ranges, or read from a user .npz."""
from __future__ import annotations

import logging
import zipfile
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from compressor.core.errors import CompressError, InputSpecError
from compressor.core.tensor_spec import TensorSpec

log = logging.getLogger(__name__)
MAX_NPZ_BYTES = 1 << 30  # arrays of one inputs .npz, uncompressed, as its zip members declare them
MAX_NPZ_MEMBERS = 1024

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
        if spec.needs_range:
            log.warning("input '%s' (%s) declares no value range: random values are 0 and 1 only; declare one "
                        "(NAME:SHAPE:%s:LOW..HIGH)", spec.name, spec.dtype, spec.dtype)
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


def read_npz(path: str | Path, *, error: type[CompressError] = InputSpecError, limit: int = MAX_NPZ_BYTES,
             expected: Mapping[str, TensorSpec] | None = None) -> dict[str, np.ndarray]:
    """The arrays of a ``.npz`` (no pickles), checked before anything is inflated: a file that is not a complete
    zip archive, holds no arrays, declares more than ``limit`` bytes uncompressed in all (a zip bomb), or an
    array whose header does not fit its ``expected`` spec (rank: the spec's or one more for a sample axis;
    fixed sizes) is a one-line ``error`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path} does not exist" if not path.exists() else f"{path} is not a file")
    try:
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            _check_members(path, members, limit, error)
            arrays = {}
            for member in members:
                name = member.filename[:-4]
                with archive.open(member) as handle:
                    shape, dtype = _npy_header(handle, path, name, error)
                    _check_header(path, name, shape, dtype, (expected or {}).get(name), limit, error)
                with archive.open(member) as handle:
                    arrays[name] = np.lib.format.read_array(handle, allow_pickle=False)
    except CompressError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as exc:
        raise error(f"{path} is not a readable .npz file (truncated or not a zip archive: {_first_line(exc)})") \
            from None
    except (OSError, ValueError) as exc:
        raise error(f"{path} is not a readable .npz file ({_first_line(exc)})") from None
    return arrays


def _check_members(path: Path, members: list, limit: int, error: type[CompressError]) -> None:
    if not members:
        raise error(f"{path} holds no arrays (an empty .npz)")
    if len(members) > MAX_NPZ_MEMBERS:
        raise error(f"{path} holds {len(members)} files; an inputs .npz holds at most {MAX_NPZ_MEMBERS}")
    odd = next((m.filename for m in members if not m.filename.endswith(".npy")), None)
    if odd is not None:
        raise error(f"{path} holds {odd!r}, not a .npy array: is it a .npz file?")
    declared = sum(m.file_size for m in members)
    if declared > limit:
        raise error(f"{path} inflates to {declared / 2**20:.1f} MiB of arrays; at most {limit / 2**20:.0f} MiB "
                    f"are read")


def _npy_header(handle, path: Path, name: str, error: type[CompressError]) -> tuple[tuple[int, ...], np.dtype]:
    try:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
    except ValueError as exc:
        raise error(f"{path}: array '{name}' is not a .npy array ({_first_line(exc)})") from None
    if dtype.hasobject:
        raise error(f"{path}: array '{name}' holds Python objects (pickles are refused); save numeric arrays")
    return tuple(int(d) for d in shape), dtype


def _check_header(path: Path, name: str, shape: tuple[int, ...], dtype: np.dtype, spec: TensorSpec | None,
                  limit: int, error: type[CompressError]) -> None:
    size = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    if size > limit:
        raise error(f"{path}: array '{name}' of shape {list(shape)} is {size / 2**20:.1f} MiB; at most "
                    f"{limit / 2**20:.0f} MiB are read")
    if spec is None:
        return
    rank = len(spec.shape)
    if len(shape) not in (rank, rank + 1):
        raise error(f"{path}: array '{name}' has shape {list(shape)}, input '{spec.name}' is {spec.shape_text} "
                    f"(rank {rank}, or {rank + 1} with a leading sample axis)")
    for got, want in zip(shape[len(shape) - rank:], spec.shape):
        if (isinstance(want, int) and got != want) or got < 1:
            raise error(f"{path}: array '{name}' has shape {list(shape)}, input '{spec.name}' is {spec.shape_text}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_npz_feeds(path: str | Path, specs: Sequence[TensorSpec]) -> list[Feed]:
    """Feeds from a user ``.npz``: one array per input name; a leading axis may stack several samples.

    Arrays of the input's rank form one feed; arrays of rank + 1 are split along axis 0 into feeds. The
    archive's declared sizes and each array's header are checked (:func:`read_npz`) before any is loaded.
    """
    path = Path(path)
    if not path.exists():
        raise InputSpecError(f"inputs file {path} does not exist")
    arrays = read_npz(path, expected={s.name: s for s in specs})
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
    if counts == {0}:
        raise InputSpecError(f"{path}: the inputs hold 0 samples")
    return [{s.name: arrays[s.name][i] for s in specs} for i in range(counts.pop())]
