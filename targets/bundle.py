"""Deployment bundles: a folder and a .tar.gz that run on the device with numpy and the runtime only.

A bundle's identity is its manifest: every file's sha256 and size, and the sha256 of the manifest itself
(the *digest*, printed when the bundle is made). Signed with the user's Ed25519 key (``manifest.sig``, see
:mod:`compressor.targets.signing`), nobody without that key can produce a bundle that ``verify_bundle`` with
the public key accepts. Verification checks everything before any of the bundle's code runs; the self-test
then runs in a separate, isolated interpreter, and only code proven to be ours (the toolchain's own runtime
files, or any files under a verified signature).
"""
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
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from compressor.core.errors import BundleError
from compressor.core.feeds import random_feed
from compressor.core.files import atomic_dir, ensure_writable_dir, sha256_file
from compressor.core.version import __version__
from compressor.runtime import files_for as runtime_files
from compressor.targets.base import Artifact
from compressor.targets.bundle_archive import (
    MAX_MEMBERS,
    extract_archive,
    normalize_modes,
    write_archive,
)
from compressor.targets.bundle_manifest import (
    FORMAT,
    GOLDEN,
    JETSON_FORMAT,
    MANIFEST,
    MAX_MANIFEST_BYTES,
    RESERVED,
    SIGNATURE,
    allowed_folders,
    check_file_set,
    check_golden,
    check_relative_path,
    check_structure,
    listed_size,
    parse_manifest,
    runtime_mismatches,
    shown,
)
from compressor.targets.compare import Tolerance
from compressor.targets.profile import ProfileOptions, profile_runner
from compressor.targets.signing import (
    check_signature,
    fingerprint,
    load_private_key,
    load_public_key,
    manifest_digest,
    sign,
    signing_record,
)
from compressor.targets.table import open_runner

RUNTIME_PACKAGES = {"onnxruntime": "onnxruntime", "onnx": "onnxruntime", "openvino": "openvino"}
SELFTEST_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LD_LIBRARY_PATH", "TMPDIR", "SYSTEMROOT", "OMP_NUM_THREADS",
                "OMP_WAIT_POLICY")
"""The only environment variables the self-test's interpreter inherits."""
__all__ = ["FORMAT", "JETSON_FORMAT", "Bundle", "create_bundle", "verify_bundle", "check_bundle_name"]


@dataclass(frozen=True)
class Bundle:
    """Where a bundle was written, its identity (``sha256:`` of its manifest) and the key that signed it."""

    folder: Path
    archive: Path
    digest: str = ""
    signed_by: str | None = None


SigningKey = Ed25519PrivateKey | str | Path | None


def create_bundle(artifact: Artifact, out_dir: str | Path, *, name: str | None = None,
                  profile: Mapping[str, Any] | None = None,
                  profile_options: ProfileOptions = ProfileOptions(min_iterations=20, min_duration_s=1.0),
                  seed: int = 0, extras: Mapping[str, str | Path | bytes] | None = None,
                  signing_key: SigningKey = None) -> Bundle:
    """Write ``out_dir/<name>/`` and ``out_dir/<name>.tar.gz`` for ``artifact``.

    The bundle holds the model files, golden inputs and outputs from this artifact, a latency profile
    (measured now unless ``profile`` is given), the engine's runtime files (``run.py`` and its modules, as
    ``compressor.runtime.BUNDLE_FILES`` lists them) and ``manifest.json`` with every file's sha256 and size.
    ``extras`` maps bundle-relative names to files copied in too (task scripts such as a numpy-only tracker,
    which import the engine modules beside them), or to the bytes to write there (a task's settings file).
    ``signing_key`` (a private key or its file; see ``signing.resolve_signing_key`` for the environment
    variable) signs the manifest into ``manifest.sig``. Nothing is written outside ``out_dir/<name>`` and
    ``out_dir/<name>.tar.gz``; a folder of that name that is not a bundle is never replaced.
    """
    name = check_bundle_name(name or f"{artifact.path.stem}-{artifact.target}")
    key = private_key_of(signing_key)
    out_dir = ensure_writable_dir(out_dir)
    folder, archive = bundle_destination(out_dir, name)
    model_files = [_artifact_file(artifact, file) for file in artifact.files]
    runner = open_runner(artifact)
    with runner:
        golden_in = random_feed(artifact.inputs, batch=1, rng=np.random.default_rng(seed))
        golden_out = runner.infer(golden_in)
        measured = dict(profile) if profile is not None else profile_runner(runner, profile_options)
        version = runner.runtime_version
    with atomic_dir(folder) as tmp:
        for rel, source in model_files:
            (tmp / "model" / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, tmp / "model" / rel)
        np.savez(tmp / GOLDEN, **{f"input.{k}": v for k, v in golden_in.items()},
                 **{f"output.{k}": v for k, v in golden_out.items()})
        (tmp / "profile.json").write_text(json.dumps(measured, indent=2, default=str) + "\n")
        for file_name, path in runtime_files("engine").items():
            shutil.copyfile(path, tmp / file_name)
        (tmp / "README.md").write_text(_readme(name, artifact))
        for rel, source in (extras or {}).items():
            _write_extra(tmp, rel, source)
        digest, signer = seal(tmp, _manifest(name, artifact, version), key)
        write_archive(tmp, archive, name)
    return Bundle(folder, archive, digest, signer)


def check_bundle_name(name: Any) -> str:
    """``name`` if it is a plain folder name (no separators, not ``.``/``..``/hidden); BundleError otherwise."""
    text = str(name)
    if (not isinstance(name, str) or not name or name in (".", "..") or name.startswith(".") or len(name) > 200
            or any(sep in name for sep in ("/", "\\", "\0", os.sep, os.altsep or "/"))
            or any(ord(c) < 32 for c in name) or Path(name).is_absolute()):
        raise BundleError(f"bundle name {text[:80]!r} must be a plain folder name: no '/', '\\', not '.', '..' "
                          f"or starting with '.'")
    return name


def bundle_destination(out_dir: Path, name: str) -> tuple[Path, Path]:
    """``out_dir/name`` and ``out_dir/name.tar.gz``, refusing to replace anything that is not a bundle."""
    folder, archive = out_dir / name, out_dir / f"{name}.tar.gz"
    if folder.resolve().parent != out_dir.resolve() or archive.resolve().parent != out_dir.resolve():
        raise BundleError(f"bundle name {name!r} leaves the output folder {out_dir}")
    if folder.is_symlink() or (folder.exists() and not _is_bundle_folder(folder)):
        raise BundleError(f"{folder} exists and is not a bundle: choose another --name or move it away")
    if archive.is_symlink() or (archive.exists() and not archive.is_file()):
        raise BundleError(f"{archive} exists and is not a bundle archive: choose another --name or move it away")
    return folder, archive


def _is_bundle_folder(folder: Path) -> bool:
    try:
        manifest = folder / MANIFEST
        if not folder.is_dir() or not manifest.is_file() or manifest.stat().st_size > MAX_MANIFEST_BYTES:
            return False
        return json.loads(manifest.read_bytes()).get("format") in (FORMAT, JETSON_FORMAT)
    except (OSError, ValueError, AttributeError, RecursionError):
        return False


def private_key_of(signing_key: SigningKey) -> Ed25519PrivateKey | None:
    """The private key ``signing_key`` is or names (a key file), or None."""
    if signing_key is None or isinstance(signing_key, Ed25519PrivateKey):
        return signing_key
    return load_private_key(signing_key)


def _artifact_file(artifact: Artifact, file: str) -> tuple[str, Path]:
    """(path inside ``model/``, source path) of one artifact file, which must lie in the artifact's folder."""
    rel = check_relative_path(file, f"artifact {artifact.path.name}").as_posix()
    source = artifact.folder / rel
    if not source.resolve().is_relative_to(artifact.folder.resolve()):
        raise BundleError(f"artifact {artifact.path.name} names a file outside its folder: {file}")
    return rel, source


def _write_extra(folder: Path, rel: str, source: str | Path | bytes) -> None:
    path = check_relative_path(rel, "bundle extra")
    dest = folder / path
    if rel in RESERVED or dest.exists():
        raise BundleError(f"bundle extra '{rel}' would replace one of the bundle's own files")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(source, bytes):
        dest.write_bytes(source)
    else:
        shutil.copyfile(source, dest)


def file_records(folder: Path) -> dict[str, dict[str, Any]]:
    """``{"files": {rel: sha256}, "sizes": {rel: bytes}}`` of every file under ``folder`` but the manifest's own."""
    paths = [p for p in sorted(folder.rglob("*")) if p.is_file() and p.relative_to(folder).as_posix() not in RESERVED]
    return {"files": {p.relative_to(folder).as_posix(): sha256_file(p) for p in paths},
            "sizes": {p.relative_to(folder).as_posix(): p.stat().st_size for p in paths}}


def seal(folder: Path, manifest: Mapping[str, Any], key: Ed25519PrivateKey | None) -> tuple[str, str | None]:
    """Write ``manifest`` (with the file records and the signer's fingerprint) and its signature into
    ``folder``, give everything normal permissions; return (digest, signer fingerprint or None)."""
    data = (json.dumps({**manifest, "signing": signing_record(key), **file_records(folder)}, indent=2,
                       default=str) + "\n").encode()
    (folder / MANIFEST).write_bytes(data)
    if key is not None:
        (folder / SIGNATURE).write_bytes(sign(key, data))
    normalize_modes(folder)
    return manifest_digest(data), None if key is None else fingerprint(key.public_key())


def _manifest(name: str, artifact: Artifact, runtime_version: str) -> dict[str, Any]:
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
        "selftest": True, "selftest_tolerance": Tolerance.for_precision(artifact.precision).to_dict(),
    }


def _readme(name: str, artifact: Artifact) -> str:
    package = RUNTIME_PACKAGES[artifact.target]
    return (f"# {name}\n\n{artifact.target} {artifact.precision} model built by edge-compress.\n\n"
            f"    pip install numpy {package}\n    python run.py --selftest\n    python run.py --profile --json\n"
            f"    python run.py --input inputs.npz --output outputs.npz\n\n"
            f"Inputs: {', '.join(s.format() for s in artifact.inputs)}\n\n"
            f"Check it came from us: compress bundle verify {name}.tar.gz --key PUBLIC_KEY (a signed bundle),\n"
            f"or compare the sha256 of manifest.json with the digest printed when the bundle was made.\n")


# ---------------------------------------------------------------- verification
PublicKey = Ed25519PublicKey | str | Path | None


def verify_bundle(path: str | Path, *, run_selftest: bool = True, timeout_s: float = 300,
                  public_key: PublicKey = None, expected_digest: str | None = None) -> dict[str, Any]:
    """Check a bundle (folder or .tar.gz) and run its self-test; raise BundleError on any problem.

    In order, before any of the bundle's code runs: the archive's members (count, sizes, types, paths)
    against limits and its manifest, then, extracted into a temporary folder, the manifest against
    ``expected_digest`` and its signature against ``public_key`` (when given), the file list (no file
    more, none less), every size and sha256, and that the manifest says what the toolchain writes. The
    self-test then runs in a separate isolated interpreter, and only when the bundle's runtime files are
    this toolchain's own or a verified signature vouches for them.
    """
    path = Path(path)
    if not path.exists():
        raise BundleError(f"bundle {path} does not exist")
    key = load_public_key(public_key) if isinstance(public_key, (str, Path)) else public_key
    checks = dict(run_selftest=run_selftest, timeout_s=timeout_s, key=key, expected_digest=expected_digest)
    if path.is_dir():
        return _verify_folder(path.resolve(), **checks)
    try:
        with tempfile.TemporaryDirectory(prefix="bundle-verify-") as tmp:
            return _verify_folder(extract_archive(path, Path(tmp)).resolve(), **checks)
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise BundleError(f"{path} is not a readable bundle archive ({type(exc).__name__}: {exc})") from None
    except OSError as exc:
        raise BundleError(f"{path} is not a readable bundle archive ({exc.strerror or exc})") from None


def _verify_folder(folder: Path, *, run_selftest: bool, timeout_s: float, key: Ed25519PublicKey | None,
                   expected_digest: str | None) -> dict[str, Any]:
    files, folders = _walk(folder)
    manifest_path = folder / MANIFEST
    if MANIFEST not in files:
        raise BundleError(f"{folder} has no valid manifest.json")
    if manifest_path.stat().st_size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{folder}: manifest.json is larger than {MAX_MANIFEST_BYTES >> 20} MiB")
    manifest_bytes = manifest_path.read_bytes()
    manifest = parse_manifest(manifest_bytes, str(folder))
    digest = manifest_digest(manifest_bytes)
    if expected_digest is not None and _digest_text(expected_digest) != digest:
        raise BundleError(f"bundle identity {digest} is not the expected {_digest_text(expected_digest)}: "
                          f"this is not the bundle that was made")
    signature = _head(folder / SIGNATURE) if SIGNATURE in files else None
    verified = check_signature(key, manifest, manifest_bytes, signature) if key is not None else None
    check_file_set(files, manifest)
    for extra in sorted(folders - allowed_folders(manifest)):
        raise BundleError(f"bundle holds a folder not in its manifest: {shown(extra)}")
    for rel, sha in manifest["files"].items():
        size = listed_size(manifest, rel)
        if size is not None and (folder / rel).stat().st_size != size:
            raise BundleError(f"checksum mismatch: {rel} was modified (its size is not the manifest's)")
        if sha256_file(folder / rel) != sha:
            raise BundleError(f"checksum mismatch: {rel} was modified")
    check_structure(manifest)
    if manifest["format"] == FORMAT:
        check_golden(folder / GOLDEN, manifest)
    record = manifest.get("signing") if isinstance(manifest.get("signing"), dict) else {}
    report: dict[str, Any] = {
        "bundle": manifest.get("name"), "files": len(manifest["files"]), "checksums": "ok", "digest": digest,
        "signed_by": record.get("public_key"), "signature": "verified" if verified else (
            "not checked (no --key)" if signature is not None else "absent")}
    foreign = [] if verified else runtime_mismatches(manifest)
    if foreign:
        report["runtime_differs"] = foreign
    if not run_selftest:
        return report
    if manifest["format"] == JETSON_FORMAT:
        report["selftest"] = None
        report["note"] = "this bundle builds its engine on the device: run its build and profile steps there"
        return report
    if foreign:
        toolchain = manifest.get("toolchain") if isinstance(manifest.get("toolchain"), dict) else {}
        made_by = shown(toolchain.get("edge_compress", "unknown"))[:40]
        raise BundleError(f"{', '.join(foreign)} differ(s) from this toolchain's runtime (the bundle says "
                          f"edge-compress {made_by}): its code is not run unless --key verifies the bundle's "
                          f"signature; use --no-selftest to check files only")
    report["selftest"] = _run_selftest(folder, timeout_s)
    return report


def _head(path: Path, size: int = 4096) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(size)


def _digest_text(text: str) -> str:
    text = text.strip().lower()
    return text if text.startswith("sha256:") else f"sha256:{text}"


def _walk(folder: Path) -> tuple[set[str], set[str]]:
    """Relative paths of the files and of the folders under ``folder``; links and special files refused."""
    files: set[str] = set()
    folders: set[str] = set()
    for root, dirnames, filenames in os.walk(folder):
        for entry in (*dirnames, *filenames):
            path = Path(root) / entry
            rel = path.relative_to(folder).as_posix()
            if path.is_symlink():
                raise BundleError(f"bundle holds a link: {shown(rel)}")
            if len(files) + len(folders) >= MAX_MEMBERS:
                raise BundleError(f"{folder} holds more than {MAX_MEMBERS} files and folders: not a bundle")
            if path.is_dir():
                folders.add(rel)
            elif path.is_file():
                files.add(rel)
            else:
                raise BundleError(f"bundle holds a special file: {shown(rel)}")
    return files, folders


def _run_selftest(folder: Path, timeout_s: float) -> dict[str, Any]:
    """Run ``run.py --selftest`` in a separate isolated Python: ``-I -B``, in the bundle's folder, no byte-code,
    none of our environment but the basics (no PYTHONPATH), no toolchain imports."""
    env = {k: os.environ[k] for k in SELFTEST_ENV if k in os.environ}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    try:
        done = subprocess.run([sys.executable, "-I", "-B", "run.py", "--selftest", "--json"], cwd=folder,
                              capture_output=True, text=True, timeout=timeout_s, env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise BundleError(f"self-test did not finish in {timeout_s:.0f} s") from None
    try:
        result = json.loads(done.stdout.strip().splitlines()[-1])
        if not isinstance(result, dict):
            raise ValueError(result)
    except (ValueError, IndexError):
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise BundleError(f"self-test failed to run: {tail}") from None
    if done.returncode != 0 or not result.get("selftest"):
        raise BundleError(f"self-test failed: outputs differ from the golden outputs (max abs {result.get('max_abs')})")
    return result
