"""Everything that ships to a device: standard library, numpy and the inference runtime only.

Each module here is copied into bundles as it is, flat beside the others. Siblings import each other
relatively (``from .backends import open_backend``): inside the toolchain they are the package
``compressor.runtime``; in a bundle folder, a script (``python run.py``, also under ``python -I``) first
makes its folder the package ``edge_compress_bundle`` and turns off byte-code writing, so the bundle stays
as listed. Nothing here imports anything else of ours. :data:`BUNDLE_FILES` declares which files a bundle of
each kind carries; :func:`source` gives their paths.
"""
from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent

ENGINE_FILES = ("run.py", "backends.py", "bundle.py", "feeds.py", "measurement.py", "errors.py")
"""The bundle's runner (``run.py``) and what it imports: in every bundle ``create_bundle`` writes."""

BUNDLE_FILES: dict[str, tuple[str, ...]] = {
    "engine": ENGINE_FILES,
    "jetson": (*ENGINE_FILES, "jetson.py"),
    "tracker": ("tracker.py",),
    "can-detector": ("detect.py", "can_log.py", "can_tokens.py", "can_stream.py"),
}
"""Bundle kind -> the runtime files it carries. ``engine`` is in every bundle ``create_bundle`` writes, so
``tracker`` and ``can-detector`` list only their files on top of it; a Jetson bundle is written on its own,
so ``jetson`` lists all of its files."""

SCRIPTS = ("run.py", "jetson.py", "tracker.py", "detect.py")
"""The runtime files a user runs as programs (executable in a bundle); the others are imported by them."""


def source(name: str) -> Path:
    """Path of the runtime file ``name`` (as it is named inside a bundle)."""
    path = HERE / name
    if not path.is_file() or path.parent != HERE:
        raise KeyError(f"no runtime file {name!r} in {HERE}")
    return path


def files_for(kind: str) -> dict[str, Path]:
    """``{name in bundle: source path}`` for a bundle ``kind`` (see :data:`BUNDLE_FILES`)."""
    return {name: source(name) for name in BUNDLE_FILES[kind]}
