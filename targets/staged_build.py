"""Building into a shared folder safely: each build works in its own staging folder inside the output folder and
publishes the artifact's files and then its sidecar under a lock on the folder. Two builds of one name into one
folder at once never mix (the sidecar always describes the files beside it), and an interrupted build (Ctrl-C,
SIGTERM) leaves neither a half-built engine nor a temporary folder anywhere."""
from __future__ import annotations

import dataclasses
import glob
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

from compressor.core.feeds import Feed
from compressor.core.files import (
    errors_named_at,
    publish_entries,
    staging_dir,
    temp_files_in,
)
from compressor.core.interrupts import terminate_as_interrupt
from compressor.targets.base import Artifact, Target, default_name
from compressor.targets.options import TargetOptions

# files a target reuses between builds of one name (TensorRT's timing and calibration caches)
CACHE_PATTERN = "{stem}.*.cache"


def build_staged(target: Target, onnx_path: str | Path, *, precision: str, out_dir: str | Path,
                 name: str | None = None, options: TargetOptions | Mapping[str, Any] | None = None,
                 calibration: Sequence[Feed] | None = None, int8: Any = None) -> Artifact:
    """``target.build`` of ``onnx_path`` into ``out_dir``, staged: built in a private folder (temporary files of
    quantizers and calibrators included), then published with the sidecar last. Returns the published
    artifact: read from its sidecar while still staged (another build of the same name may replace the
    published files at any moment after), pointing into ``out_dir``."""
    out_dir = Path(out_dir)
    stem = name or default_name(Path(onnx_path), precision)
    with terminate_as_interrupt(), staging_dir(out_dir, prefix=f".{stem}.build-") as staging, \
            errors_named_at(staging, out_dir):
        _seed_caches(out_dir, staging, stem)
        with temp_files_in(staging / ".scratch"):
            built = target.build(Path(onnx_path), precision=precision, out_dir=staging, name=stem, options=options,
                                 calibration=calibration, int8=int8)
        caches = sorted(p.name for p in _caches(staging, stem))
        files = list(dict.fromkeys([*built.files, *caches]))
        staged = Artifact.load(staging / built.sidecar.name)
        publish_entries(staging, out_dir, files, last=[built.sidecar.name])
    return dataclasses.replace(staged, path=out_dir / staged.path.name)


def _caches(folder: Path, stem: str) -> list[Path]:
    return [p for p in folder.glob(CACHE_PATTERN.format(stem=glob.escape(stem))) if p.is_file()]


def _seed_caches(out_dir: Path, staging: Path, stem: str) -> None:
    """Copy the caches an earlier build of ``stem`` left in ``out_dir`` into ``staging`` for the target to reuse."""
    for cache in _caches(out_dir, stem):
        shutil.copy2(cache, staging / cache.name)
