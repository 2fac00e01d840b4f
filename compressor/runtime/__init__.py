"""Everything that ships to a device: standard library, numpy and the inference runtime only.

Each module here is copied into bundles as it is and imports its siblings by their bare names there, so
nothing in this package imports anything else of ours. :data:`BUNDLE_FILES` declares which files a bundle
of each kind carries; :func:`source` gives their paths.
"""
from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent

BUNDLE_FILES: dict[str, tuple[str, ...]] = {
    "engine": ("run.py",),
    "jetson": ("run.py", "jetson.py"),
    "tracker": ("tracker.py",),
    "can-detector": ("detect.py",),
}
"""Bundle kind -> the runtime files it carries (the engine kind is in every bundle)."""


def source(name: str) -> Path:
    """Path of the runtime file ``name`` (as it is named inside a bundle)."""
    path = HERE / name
    if not path.is_file() or path.parent != HERE:
        raise KeyError(f"no runtime file {name!r} in {HERE}")
    return path


def files_for(kind: str) -> dict[str, Path]:
    """``{name in bundle: source path}`` for a bundle ``kind`` (see :data:`BUNDLE_FILES`)."""
    return {name: source(name) for name in BUNDLE_FILES[kind]}
