"""Model inputs on the device: random ones from a manifest's input specs (profiling), and a user's ``.npz``.

The random arrays are the same as the toolchain's ``compressor.core.feeds.random_feed`` for the same specs,
batch and seed (tests/runtime/test_random_feed_parity.py checks it): a spec here is the JSON dict a manifest
stores (``TensorSpec.to_dict``: ``name``, ``shape``, ``dtype``, optional ``range`` and ``examples``). A
user's ``.npz`` is checked before it is loaded (declared sizes against the file's, so a small file that
inflates to gigabytes is refused) and after (names, dtypes and shapes against the specs); every problem is
a one-line ValueError.
"""
from __future__ import annotations

import os
import secrets
import zipfile
import zlib
from pathlib import Path

import numpy as np

MAX_FEED_BYTES = 4 * 1024 ** 3
"""Most bytes of inputs a script allocates or loads at once."""
NPZ_RATIO, NPZ_FLOOR = 200, 256 * 1024 ** 2
"""An .npz may declare at most max(NPZ_FLOOR, NPZ_RATIO x its own size) bytes of arrays."""


def concrete_shape(spec, batch=None):
    """``spec``'s shape with symbols replaced: a symbolic axis 0 by ``batch``, others by their example size."""
    examples = spec.get("examples") or {}
    shape = []
    for axis, dim in enumerate(spec["shape"]):
        if isinstance(dim, int):
            shape.append(dim)
        elif axis == 0 and batch is not None:
            shape.append(int(batch))
        elif dim in examples:
            shape.append(int(examples[dim]))
        elif axis == 0:
            shape.append(1)
        else:
            raise ValueError(f"input '{spec['name']}': symbolic dimension '{dim}' has no example size")
    return tuple(shape)


def value_range(spec):
    """(low, high) for random values: the declared range, else [0, 1) for floats, {0, 1} for integers."""
    declared = spec.get("range")
    if declared:
        return float(declared[0]), float(declared[1])
    dtype = spec.get("dtype", "float32")
    return (0.0, 1.0) if dtype.startswith("float") else (0.0, 1.0 if dtype == "bool" else 2.0)


def random_feed(specs, batch=None, seed=0):
    """Inputs drawn uniformly from each spec's range (integers: [low, high)), symbolic dims at their examples."""
    rng = np.random.default_rng(seed)
    feed = {}
    for spec in specs:
        shape, dtype = concrete_shape(spec, batch), spec.get("dtype", "float32")
        low, high = value_range(spec)
        if dtype.startswith("float"):
            feed[spec["name"]] = rng.uniform(low, high, size=shape).astype(dtype)
        elif dtype == "bool":
            feed[spec["name"]] = rng.integers(0, 2, size=shape).astype(bool)
        else:
            feed[spec["name"]] = rng.integers(int(low), max(int(high), int(low) + 1), size=shape).astype(dtype)
    return feed


def feed_bytes(specs, batch=None):
    """Bytes the inputs of ``specs`` take at ``batch``."""
    total = 0
    for spec in specs:
        count = 1
        for dim in concrete_shape(spec, batch):
            count *= int(dim)
        total += count * np.dtype(spec.get("dtype", "float32")).itemsize
    return total


def check_feed(specs, feed):
    """Raise ValueError unless ``feed`` has exactly the specs' names, each with its dtype and shape."""
    expected = [spec["name"] for spec in specs]
    missing, extra = sorted(set(expected) - set(feed)), sorted(set(feed) - set(expected))
    if missing or extra:
        what = f"unknown input(s) {', '.join(extra)}" if extra else f"missing input(s) {', '.join(missing)}"
        raise ValueError(f"{what}; the model takes: {', '.join(expected)}")
    sizes = {}
    for spec in specs:
        array, want = feed[spec["name"]], [d for d in spec["shape"]]
        text = "x".join(str(d) for d in want)
        if array.dtype.name != spec.get("dtype", "float32"):
            raise ValueError(f"input '{spec['name']}' is {array.dtype.name}, the model takes {spec.get('dtype')}")
        if array.ndim != len(want) or any(got < 1 or (isinstance(dim, int) and got != dim)
                                          for got, dim in zip(array.shape, want)):
            raise ValueError(f"input '{spec['name']}' has shape {list(array.shape)}, the model takes {text}")
        for got, dim in zip(array.shape, want):
            if isinstance(dim, str) and sizes.setdefault(dim, got) != got:
                raise ValueError(f"input '{spec['name']}' has {dim}={got} but another input has {dim}={sizes[dim]}")


def load_feed(path, specs):
    """The arrays of the ``.npz`` at ``path``, checked against ``specs``; ValueError naming the problem."""
    path = Path(path)
    _check_npz_sizes(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            feed = {name: data[name] for name in data.files}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as exc:
        raise ValueError(f"{path} is not a readable .npz of arrays ({_first_line(exc)})") from None
    check_feed(specs, feed)
    return feed


def _check_npz_sizes(path):
    """Refuse an .npz whose members declare far more bytes than the file could hold (before inflating any)."""
    try:
        size = path.stat().st_size
        with zipfile.ZipFile(path) as archive:
            declared = sum(info.file_size for info in archive.infolist())
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path} is not a readable .npz (truncated or not a zip: {_first_line(exc)})") from None
    if declared > min(max(NPZ_FLOOR, NPZ_RATIO * size), MAX_FEED_BYTES):
        raise ValueError(f"{path} declares {declared / 1024 ** 2:.0f} MiB of arrays in a {size / 1024 ** 2:.1f} MiB "
                         f"file: refused as a decompression bomb")


def _first_line(exc):
    text = str(getattr(exc, "strerror", None) or exc).strip()
    return (text.splitlines() or [type(exc).__name__])[0][:120]


def save_outputs(path, outputs):
    """Write ``outputs`` as an .npz at exactly ``path``, atomically: a temporary file beside it (created under
    the umask), renamed when complete; nothing is left behind on failure."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with open(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666), "wb") as handle:
            np.savez(handle, **outputs)
        os.replace(tmp, path)
    except OSError as exc:
        raise OSError(f"cannot write {path}: {_first_line(exc)}") from None
    finally:
        tmp.unlink(missing_ok=True)
