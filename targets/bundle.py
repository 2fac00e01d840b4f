"""Deployment bundles: a folder and a .tar.gz that run on the device with numpy and the runtime only."""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Mapping

import numpy as np

from compressor.core.errors import BundleError
from compressor.core.feeds import random_feed
from compressor.core.files import (
    atomic_dir,
    atomic_path,
    ensure_writable_dir,
    sha256_file,
    write_json,
)
from compressor.core.version import __version__
from compressor.runtime import files_for as runtime_files
from compressor.targets.base import Artifact
from compressor.targets.compare import Tolerance
from compressor.targets.profile import ProfileOptions, profile_runner
from compressor.targets.table import open_runner

FORMAT = "edge-compress-bundle/1"
RUNTIME_PACKAGES = {"onnxruntime": "onnxruntime", "onnx": "onnxruntime", "openvino": "openvino"}


@dataclass(frozen=True)
class Bundle:
    """Where a bundle was written."""

    folder: Path
    archive: Path


def create_bundle(artifact: Artifact, out_dir: str | Path, *, name: str | None = None,
                  profile: Mapping[str, Any] | None = None,
                  profile_options: ProfileOptions = ProfileOptions(min_iterations=20, min_duration_s=1.0),
                  seed: int = 0, extras: Mapping[str, str | Path | bytes] | None = None) -> Bundle:
    """Write ``out_dir/<name>/`` and ``out_dir/<name>.tar.gz`` for ``artifact``.

    The bundle holds the model files, golden inputs and outputs from this artifact, a latency profile
    (measured now unless ``profile`` is given), the engine's runtime files (``run.py`` and its modules, as
    ``compressor.runtime.BUNDLE_FILES`` lists them) and ``manifest.json`` with every file's sha256.
    ``extras`` maps bundle-relative names to files copied in too (task scripts such as a numpy-only tracker,
    which import the engine modules beside them), or to the bytes to write there (a task's settings file).
    """
    name = name or f"{artifact.path.stem}-{artifact.target}"
    out_dir = ensure_writable_dir(out_dir)
    folder, archive = out_dir / name, out_dir / f"{name}.tar.gz"
    runner = open_runner(artifact)
    with runner:
        golden_in = random_feed(artifact.inputs, batch=1, rng=np.random.default_rng(seed))
        golden_out = runner.infer(golden_in)
        measured = dict(profile) if profile is not None else profile_runner(runner, profile_options)
        version = runner.runtime_version
    with atomic_dir(folder) as tmp:
        (tmp / "model").mkdir()
        for file in artifact.files:
            shutil.copyfile(artifact.folder / file, tmp / "model" / file)
        np.savez(tmp / "golden.npz", **{f"input.{k}": v for k, v in golden_in.items()},
                 **{f"output.{k}": v for k, v in golden_out.items()})
        write_json(tmp / "profile.json", measured)
        for file_name, path in runtime_files("engine").items():
            shutil.copyfile(path, tmp / file_name)
        (tmp / "README.md").write_text(_readme(name, artifact))
        for rel, source in (extras or {}).items():
            if Path(rel).is_absolute() or ".." in Path(rel).parts:
                raise BundleError(f"bundle extra '{rel}' must be a relative path inside the bundle")
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            if isinstance(source, bytes):
                (tmp / rel).write_bytes(source)
            else:
                shutil.copyfile(source, tmp / rel)
        write_json(tmp / "manifest.json", _manifest(name, artifact, tmp, version))
    with atomic_path(archive) as tmp_archive:
        with tarfile.open(tmp_archive, "w:gz") as tar:
            tar.add(folder, arcname=name)
    return Bundle(folder, archive)


def _manifest(name: str, artifact: Artifact, folder: Path, runtime_version: str) -> dict[str, Any]:
    tol = Tolerance.for_precision(artifact.precision)
    files = {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}
    import torch

    return {
        "format": FORMAT, "name": name, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "target": artifact.target, "precision": artifact.precision,
        "model": {"path": f"model/{artifact.path.name}", "options": dict(artifact.options)},
        "inputs": [s.to_dict() for s in artifact.inputs], "outputs": [s.to_dict() for s in artifact.outputs],
        "runtime": {"name": artifact.target, "version": runtime_version,
                    "requirements": ["numpy", f"{RUNTIME_PACKAGES[artifact.target]}"]},
        "toolchain": {"edge_compress": __version__, "python": platform.python_version(),
                      "numpy": np.__version__, "torch": torch.__version__,
                      "built_on": f"{platform.system()} {platform.machine()}"},
        "selftest_tolerance": tol.to_dict(),
        "files": files,
    }


def _readme(name: str, artifact: Artifact) -> str:
    package = RUNTIME_PACKAGES[artifact.target]
    return (f"# {name}\n\n{artifact.target} {artifact.precision} model built by edge-compress.\n\n"
            f"    pip install numpy {package}\n    python run.py --selftest\n    python run.py --profile --json\n"
            f"    python run.py --input inputs.npz --output outputs.npz\n\n"
            f"Inputs: {', '.join(s.format() for s in artifact.inputs)}\n")


# ---------------------------------------------------------------- verification
def safe_members(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """The archive's members, refusing absolute paths, '..', links and special files."""
    members = tar.getmembers()
    for member in members:
        path = PurePosixPath(member.name)
        if member.name.startswith(("/", "\\")) or path.is_absolute() or ".." in path.parts or ":" in path.parts[0]:
            raise BundleError(f"unsafe path in archive: {member.name}")
        if member.issym() or member.islnk():
            raise BundleError(f"archive holds a link: {member.name}")
        if not (member.isfile() or member.isdir()):
            raise BundleError(f"archive holds a special file: {member.name}")
    return members


def verify_bundle(path: str | Path, *, run_selftest: bool = True, timeout_s: float = 300) -> dict[str, Any]:
    """Check every checksum and run the bundle's self-test; raise BundleError on any problem."""
    path = Path(path)
    if not path.exists():
        raise BundleError(f"bundle {path} does not exist")
    if path.is_dir():
        return _verify_folder(path, run_selftest, timeout_s)
    try:
        with tarfile.open(path, "r:*") as tar, tempfile.TemporaryDirectory(prefix="bundle-verify-") as tmp:
            members = safe_members(tar)
            tar.extractall(tmp, members=members, filter="data")
            tops = {PurePosixPath(m.name).parts[0] for m in members}
            if len(tops) != 1:
                raise BundleError(f"{path}: archive must hold one top folder, found {len(tops)}")
            return _verify_folder(Path(tmp) / tops.pop(), run_selftest, timeout_s)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BundleError(f"{path} is not a readable bundle archive ({type(exc).__name__}: {exc})") from None


def _verify_folder(folder: Path, run_selftest: bool, timeout_s: float) -> dict[str, Any]:
    manifest_path = folder / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
        listed: dict[str, str] = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError):
        raise BundleError(f"{folder} has no valid manifest.json") from None
    for link in (p for p in folder.rglob("*") if p.is_symlink()):
        raise BundleError(f"bundle holds a link: {link.relative_to(folder)}")
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*")
               if p.is_file() and "__pycache__" not in p.parts} - {"manifest.json"}
    for rel in sorted(set(listed) - present):
        raise BundleError(f"bundle file missing: {rel}")
    for rel in sorted(present - set(listed)):
        raise BundleError(f"bundle holds a file not in its manifest: {rel}")
    for rel, digest in listed.items():
        if ".." in PurePosixPath(rel).parts or PurePosixPath(rel).is_absolute():
            raise BundleError(f"manifest lists an unsafe path: {rel}")
        if sha256_file(folder / rel) != digest:
            raise BundleError(f"checksum mismatch: {rel} was modified")
    report: dict[str, Any] = {"bundle": manifest.get("name"), "files": len(listed), "checksums": "ok"}
    if run_selftest and manifest.get("selftest") is False:
        report["selftest"] = None
        report["note"] = "this bundle builds its engine on the device: run its build and profile steps there"
    elif run_selftest:
        report["selftest"] = _run_selftest(folder, timeout_s)
    return report


def _run_selftest(folder: Path, timeout_s: float) -> dict[str, Any]:
    """Run ``run.py --selftest`` in a child Python (the bundle's own code path, no toolchain imports)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    try:
        done = subprocess.run([sys.executable, "-I", str(folder / "run.py"), "--selftest", "--json"], cwd=folder,
                              capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        raise BundleError(f"self-test did not finish in {timeout_s:.0f} s") from None
    try:
        result = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise BundleError(f"self-test failed to run: {tail}") from None
    if done.returncode != 0 or not result.get("selftest"):
        raise BundleError(f"self-test failed: outputs differ from the golden outputs (max abs {result.get('max_abs')})")
    return result
