"""Stage caching for ``compress run``: ONNX exports, engines and INT8 builds (calibration, quantization and the
accuracy gate) are kept under ``<run folder>/.cache/<kind>/<key>/``, keyed by a fingerprint of everything the
stage reads, and taken from there by a later run whose inputs are the same (``--fresh`` takes nothing).

An entry holds the stage's files (hard links to the files the run built, or copies), their SHA-256, and a record
(the accuracy gate's figures for an INT8 build). A reused entry is checked file by file against its digests and
rebuilt when any differs; its files are linked or copied into the run's staging folder, so a run still replaces
its outputs only when every stage succeeded. Sidecars name the staging folder by a placeholder in the cache and
the new staging folder when restored. After a successful run, :meth:`StageCache.prune` removes every entry (and
every training checkpoint in ``.cache/train``) that the run did not use, so the cache holds one run's worth."""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import inspect
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from compressor.core.files import atomic_dir, sha256_file, write_json
from compressor.core.version import __version__
from compressor.distill.train_state import fingerprint
from compressor.targets.base import Artifact

log = logging.getLogger(__name__)

CACHE_DIR = ".cache"
TRAIN_DIR = "train"  # the trainer's checkpoints (compressor.distill.trainer), pruned with the rest
KINDS = ("export", "engine", "int8")
ENTRY_FILE = "entry.json"
STAGING_PLACEHOLDER = "@staging@"  # what a cached sidecar says where it named the run's staging folder
FORMAT = 1


@dataclass(frozen=True)
class Reuse:
    """A stage result taken from the cache: the kind of stage, its key, and when the run that built it ran."""

    kind: str
    key: str
    built_by_run: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "key": self.key, "built_by_run": self.built_by_run}


@dataclass(frozen=True)
class Hit:
    """A cache entry restored into the staging folder: its artifacts by slot (``main``, ``qat``), the record
    stored with it, and what was reused."""

    artifacts: Mapping[str, Artifact]
    record: Mapping[str, Any]
    reuse: Reuse


class StageCache:
    """The stage cache of one run: entries under ``root`` (``<run folder>/.cache``); restored files go into
    ``staging``. ``enabled=False`` (``--fresh``) reuses nothing but still stores what the run builds."""

    def __init__(self, root: Path, staging: Path, *, enabled: bool = True, run: str | None = None) -> None:
        self.root, self.staging, self.enabled = Path(root), Path(staging), enabled
        self.run = run or time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.used: set[Path] = set()

    # ------------------------------------------------------------ keys
    @staticmethod
    def key(kind: str, parts: Mapping[str, Any]) -> str:
        """The entry key of a ``kind`` stage whose inputs are ``parts`` (JSON-able; other values by ``str``)."""
        return fingerprint({"kind": kind, "format": FORMAT, "edge_compress": __version__, **parts})

    def _entry(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    # ------------------------------------------------------------ reuse
    def fetch(self, kind: str, key: str) -> Hit | None:
        """The entry ``kind``/``key`` restored into the staging folder, or None (absent, caching off, or a file
        whose digest no longer matches: that entry is removed, and the stage is built again)."""
        entry = self._entry(kind, key)
        if not self.enabled or not (entry / ENTRY_FILE).is_file():
            return None
        try:
            data = json.loads((entry / ENTRY_FILE).read_text())
            slots = data["artifacts"]
            bad = [f"{slot}/{name}" for slot, item in slots.items() for name, digest in item["files"].items()
                   if not (entry / slot / name).is_file() or sha256_file(entry / slot / name) != digest]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            bad = [ENTRY_FILE]
        if bad:
            log.warning("cache entry %s/%s is damaged (%s): building again", kind, key, ", ".join(bad))
            shutil.rmtree(entry, ignore_errors=True)
            return None
        artifacts = {slot: self._restore(entry / slot, item) for slot, item in slots.items()}
        self.used.add(entry)
        return Hit(artifacts, data.get("record") or {}, Reuse(kind, key, str(data.get("built_by_run", "?"))))

    def _restore(self, folder: Path, item: Mapping[str, Any]) -> Artifact:
        dest = self.staging / item["folder"]
        dest.mkdir(parents=True, exist_ok=True)
        sidecar = item["sidecar"]
        for name in item["files"]:
            if name == sidecar:
                text = (folder / name).read_text().replace(STAGING_PLACEHOLDER, str(self.staging.resolve()))
                (dest / name).write_text(text)
            else:
                _link_or_copy(folder / name, dest / name)
        return Artifact.load(dest / item["primary"])

    # ------------------------------------------------------------ storing
    def store(self, kind: str, key: str, artifacts: Mapping[str, Artifact], record: Mapping[str, Any] = ()) -> None:
        """Keep ``artifacts`` (by slot; each in the staging folder) and ``record`` as entry ``kind``/``key``.
        An artifact outside the staging folder is not cached (nothing is)."""
        staging = self.staging.resolve()
        if not all(a.path.resolve().is_relative_to(staging) for a in artifacts.values()):
            return
        entry = self._entry(kind, key)
        entry.parent.mkdir(parents=True, exist_ok=True)
        slots = {}
        with atomic_dir(entry) as tmp:
            for slot, artifact in artifacts.items():
                folder = tmp / slot
                folder.mkdir()
                files = {}
                for name in (f for f in artifact.files if f != artifact.sidecar.name):
                    _link_or_copy(artifact.folder / name, folder / name)
                    files[name] = sha256_file(folder / name)
                sidecar = artifact.sidecar.name
                text = artifact.sidecar.read_text()
                for prefix in sorted({str(staging), str(self.staging)}, key=len, reverse=True):
                    text = text.replace(prefix, STAGING_PLACEHOLDER)
                (folder / sidecar).write_text(text)
                files[sidecar] = sha256_file(folder / sidecar)
                slots[slot] = {"folder": artifact.folder.resolve().relative_to(staging).as_posix(),
                               "primary": artifact.path.name, "sidecar": sidecar, "files": files}
            write_json(tmp / ENTRY_FILE, {"format": FORMAT, "kind": kind, "key": key, "built_by_run": self.run,
                                          "artifacts": slots, "record": dict(record)})
        self.used.add(entry)

    # ------------------------------------------------------------ bounding
    def prune(self, trainings_used: Iterable[str]) -> list[Path]:
        """Remove every entry this run neither reused nor stored, and every file in ``.cache/train`` not named
        in ``trainings_used`` (a finished training this run reused or produced stays). Returns what went."""
        removed = []
        for kind in KINDS:
            for entry in sorted((self.root / kind).glob("*")) if (self.root / kind).is_dir() else ():
                if entry not in self.used:
                    shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
                    removed.append(entry)
        keep = set(trainings_used)
        train = self.root / TRAIN_DIR
        for file in sorted(train.iterdir()) if train.is_dir() else ():
            if file.is_file() and file.name not in keep:
                file.unlink(missing_ok=True)
                removed.append(file)
        return removed


def _link_or_copy(source: Path, dest: Path) -> None:
    """``dest`` as a hard link to ``source`` (no copy of a large engine), or a copy where links are refused."""
    dest.unlink(missing_ok=True)
    try:
        os.link(source, dest)
    except OSError:
        shutil.copy2(source, dest)


# ------------------------------------------------------------------ what the keys are made of
def files_digest(artifact: Artifact) -> str:
    """SHA-256 over every file of ``artifact`` (an ONNX and its external data), by name."""
    digest = hashlib.sha256()
    for name in sorted(artifact.files):
        digest.update(f"{name}:{sha256_file(artifact.folder / name)}\n".encode())
    return digest.hexdigest()


def model_identity(model) -> dict[str, Any]:
    """What an export of ``model`` depends on besides its inputs: its weights, its structure (``repr``) and the
    source file of its class."""
    from compressor.distill.train_state import state_digest

    cls = type(model)
    try:
        source = inspect.getsourcefile(cls)
        code = sha256_file(source) if source and os.path.isfile(source) else ""
    except (TypeError, OSError):
        code = ""
    return {"weights": state_digest([], [model]), "structure": repr(model),
            "class": f"{cls.__module__}.{cls.__qualname__}", "code": code}


def feeds_digest(feeds: Sequence[Mapping[str, Any]]) -> str:
    """SHA-256 of calibration feeds (a list of ``{input: array}``): names, dtypes, shapes and bytes."""
    from compressor.calibration.cache import data_hash

    return data_hash(feeds)


def package_versions(names: Iterable[str]) -> dict[str, str]:
    """Installed versions of ``names`` (``absent`` for one not installed)."""
    out = {}
    for name in sorted(set(names)):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def plain(value: Any) -> Any:
    """``value`` as JSON-able data for a key: dataclasses as dicts, tuples as lists, other objects by ``str``."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if hasattr(value, "to_sidecar"):
        return plain(value.to_sidecar())
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)

