"""What a run's training depends on, as one key: the recipe without its ``deploy`` section, the seed, ``--quick``,
the data and weight files (by path, size and modification time, as ``make`` judges them), every file a recipe
setting names (your model's Python file), and the versions of this toolchain and of torch. A training whose key
and starting weights match a finished one is reused; change any of these and it runs again."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import torch

from compressor.core.version import __version__
from compressor.distill.recipe import Recipe
from compressor.distill.stage_cache import plain
from compressor.distill.tasks.base import RunContext
from compressor.distill.train_state import fingerprint

MAX_FILES = 20_000  # a data folder larger than this is fingerprinted by its first files in sorted order


STUDENT_SECTIONS = ("student", "distill")  # what a teacher's training never reads


def training_key(recipe: Recipe, context: RunContext, *, without: tuple[str, ...] = ()) -> str:
    """The fingerprint of everything ``recipe``'s training reads, apart from the models' starting weights;
    ``without`` leaves out top-level settings sections (the teacher's key: :data:`STUDENT_SECTIONS`, so a change
    to the student or the distillation does not retrain the teacher)."""
    settings = {k: v for k, v in plain(recipe.settings).items() if k not in without}
    weights = {role: path for role, path in context.weights.items() if role not in without}
    paths = sorted({*_named_paths(settings), *(str(p) for p in (context.data, *weights.values()) if p)})
    return fingerprint({"task": recipe.task, "settings": settings, "seed": context.seed, "quick": context.quick,
                        "weights": weights, "files": {p: _stat_fingerprint(p) for p in paths},
                        "versions": {"edge-compress": __version__, "torch": torch.__version__}})


def _named_paths(value: Any) -> Iterator[str]:
    """Strings in the settings that name an existing file or folder (a ``MODEL_SPEC``'s file before its ``:``)."""
    if isinstance(value, dict):
        for v in value.values():
            yield from _named_paths(v)
    elif isinstance(value, list):
        for v in value:
            yield from _named_paths(v)
    elif isinstance(value, str) and value and len(value) < 4096:
        for candidate in {value, value.rsplit(":", 1)[0]}:
            try:
                if candidate and os.path.exists(candidate):
                    yield str(Path(candidate).resolve())
            except (OSError, ValueError):
                continue


def _stat_fingerprint(path: str) -> list:
    root = Path(path)
    try:
        if root.is_file():
            info = root.stat()
            return [info.st_size, info.st_mtime_ns]
        entries = []
        for count, file in enumerate(sorted(p for p in root.rglob("*") if p.is_file())):
            if count >= MAX_FILES:
                break
            info = file.stat()
            entries.append([str(file.relative_to(root)), info.st_size, info.st_mtime_ns])
        return entries
    except OSError:
        return ["unreadable"]
