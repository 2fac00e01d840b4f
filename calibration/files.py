"""Reading one calibration file (``.npy``, ``.npz``, image) without trusting what it declares: sizes are checked
against the file and sane limits before anything is decompressed or allocated, and every way a file can be
broken (truncated, not what its suffix says, a decompression bomb) is one :class:`CalibrationError` line."""
from __future__ import annotations

import math
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from compressor.core.errors import CompressError

MAX_SAMPLE_BYTES = 1024**3  # one calibration sample (all of its arrays), uncompressed
MAX_NPZ_MEMBERS = 256
MAX_IMAGE_PIXELS = 64 * 1024**2  # 8192 x 8192


class CalibrationError(CompressError):
    """Calibration data that is empty, non-finite, unreadable, or does not fit the model's inputs."""


def _declared_npy_bytes(handle: BinaryIO, path: Path, member: str = "") -> int:
    """Bytes the ``.npy`` header read from ``handle`` says follow it (refusing object arrays)."""
    where = f"{path}{f' ({member})' if member else ''}"
    version = np.lib.format.read_magic(handle)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read_header(handle)
    if dtype.hasobject:
        raise CalibrationError(f"calibration file {where} holds Python objects; only numeric arrays are read")
    return math.prod(shape) * dtype.itemsize


def read_npy(path: Path) -> np.ndarray:
    """The array of a ``.npy`` file whose header matches its size and the limit."""
    with open(path, "rb") as handle:
        declared = _declared_npy_bytes(handle, path)
        present = path.stat().st_size - handle.tell()
    _check_size(path, declared, present)
    return np.load(path, allow_pickle=False)


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a ``.npz`` file, after checking every member's declared size against the limits and
    against the bytes it holds (a truncated archive or a member that inflates far beyond its data)."""
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
        if len(members) > MAX_NPZ_MEMBERS:
            raise CalibrationError(f"calibration file {path} has {len(members)} arrays; at most "
                                   f"{MAX_NPZ_MEMBERS} are read")
        total = sum(m.file_size for m in members)
        if total > MAX_SAMPLE_BYTES:
            raise CalibrationError(f"calibration file {path} inflates to {total / 1024**2:.0f} MiB, more than the "
                                   f"{MAX_SAMPLE_BYTES // 1024**2} MiB a sample may hold")
        for member in members:
            with archive.open(member) as handle:
                declared = _declared_npy_bytes(handle, path, member.filename)
                header = handle.tell() if hasattr(handle, "tell") else 0
            _check_size(path, declared, member.file_size - header, member.filename)
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def _check_size(path: Path, declared: int, present: int, member: str = "") -> None:
    where = f"{path}{f' ({member})' if member else ''}"
    if declared > MAX_SAMPLE_BYTES:
        raise CalibrationError(f"calibration file {where} declares an array of {declared / 1024**2:.0f} MiB, more "
                               f"than the {MAX_SAMPLE_BYTES // 1024**2} MiB a sample may hold")
    if declared > present:
        raise CalibrationError(f"calibration file {where} is truncated: its header declares {declared} bytes, "
                               f"it holds {max(present, 0)}")


def read_image(path: Path) -> np.ndarray:
    """An image as float32 HxWx3 in [0, 1]; its declared size is checked before it is decoded."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as image:
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise CalibrationError(f"calibration image {path} declares {width}x{height} pixels, more than "
                                           f"the {MAX_IMAGE_PIXELS // 1024**2} Mpixel limit (a decompression bomb?)")
                return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise CalibrationError(f"calibration image {path} is refused as a decompression bomb: {exc}") from None


def read_calibration_file(path: Path) -> dict[str, np.ndarray] | np.ndarray:
    """``.npz`` -> its arrays by name; ``.npy`` -> its array; an image -> float32 HxWx3 in [0, 1].
    Any unreadable file is one CalibrationError line naming it."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            return read_npz(path)
        if suffix == ".npy":
            return read_npy(path)
        return read_image(path)
    except CalibrationError:
        raise
    except MemoryError:
        raise CalibrationError(f"calibration file {path} does not fit in memory") from None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        what = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CalibrationError(f"cannot read calibration file {path}: {what}") from None
