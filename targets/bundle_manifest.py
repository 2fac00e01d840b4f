"""What a bundle's manifest may say: exactly what the toolchain writes, checked before anything is trusted.

A manifest lists every file of its bundle with its sha256 (``files``) and size (``sizes``); the model path,
the golden data, the self-test tolerance and the runtime files are fixed by the bundle's ``format``. A
manifest that anyone could have edited into something the toolchain never writes (self-test off, a tolerance
of 1e30, a model outside ``model/``, a Jetson build command that is not trtexec's) is refused here, whether or
not the bundle is signed. Every path a manifest names stays inside the bundle.
"""
from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Mapping

from compressor.core.errors import BundleError
from compressor.runtime import BUNDLE_FILES, ENGINE_FILES

FORMAT = "edge-compress-bundle/1"
JETSON_FORMAT = "edge-compress-jetson-bundle/1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
RESERVED = (MANIFEST, SIGNATURE)
"""Files beside the ones a manifest lists: the manifest itself and its signature."""
GOLDEN = "golden.npz"
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
ENGINE_TARGETS = ("onnxruntime", "onnx", "openvino")
RUNTIME_NAMES = frozenset(name for names in BUNDLE_FILES.values() for name in names)
"""Every runtime file a bundle may carry (its copy must be the toolchain's, see ``runtime_mismatches``)."""
_SHA256 = re.compile(r"[0-9a-f]{64}")


def shown(text: Any) -> str:
    """``text`` fit for a one-line message: as it is when printable, else quoted with escapes (newlines too)."""
    text = str(text)
    return text[:160] if text.isprintable() else repr(text)[:160]


def check_relative_path(rel: Any, what: str = "manifest") -> PurePosixPath:
    """``rel`` as a path inside its folder: relative, POSIX, no ``..``/``.``/empty parts; BundleError otherwise."""
    if not isinstance(rel, str) or not rel:
        raise BundleError(f"{what} names a path that is not a string: {shown(repr(rel))}")
    if not rel.isprintable():
        raise BundleError(f"{what} names a path with control characters: {shown(rel)}")
    path = PurePosixPath(rel)
    if (rel.startswith("/") or "\\" in rel or "\0" in rel or path.is_absolute() or ":" in path.parts[0]
            or any(part in ("..", ".", "") for part in rel.split("/"))):
        raise BundleError(f"{what} names a path outside the bundle: {rel}")
    return path


def parse_manifest(data: bytes, where: str) -> dict[str, Any]:
    """The manifest in ``data`` with its ``files`` (and ``sizes``) checked; BundleError naming ``where`` otherwise."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise BundleError(f"{where}: manifest.json is larger than {MAX_MANIFEST_BYTES >> 20} MiB")
    try:
        manifest = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BundleError(f"{where} has no valid manifest.json (not JSON)") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{where} has no valid manifest.json (not a JSON object)")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise BundleError(f"{where}: manifest 'files' must map each file to its sha256")
    for rel, digest in files.items():
        check_relative_path(rel)
        if rel in RESERVED:
            raise BundleError(f"manifest lists {rel}, which is never a listed file")
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise BundleError(f"manifest gives {rel} a checksum that is not a sha256: {str(digest)[:80]!r}")
    sizes = manifest.get("sizes")
    if sizes is not None:
        if not isinstance(sizes, dict) or set(sizes) != set(files):
            raise BundleError(f"{where}: manifest 'sizes' must give the size of exactly the listed files")
        for rel, size in sizes.items():
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise BundleError(f"manifest gives {rel} a size that is not a byte count: {str(size)[:80]!r}")
    return manifest


def listed_size(manifest: Mapping[str, Any], rel: str) -> int | None:
    """The size the manifest records for ``rel``, or None (a bundle written before sizes were recorded)."""
    sizes = manifest.get("sizes")
    return sizes.get(rel) if isinstance(sizes, dict) else None


def check_file_set(present: Iterable[str], manifest: Mapping[str, Any]) -> None:
    """Refuse a listed file that is missing and any file the manifest does not list (byte-code included)."""
    present = set(present) - set(RESERVED)
    listed = set(manifest["files"])
    for rel in sorted(listed - present):
        raise BundleError(f"bundle file missing: {rel}")
    for rel in sorted(present - listed):
        raise BundleError(f"bundle holds a file not in its manifest: {shown(rel)}")


def allowed_folders(manifest: Mapping[str, Any]) -> set[str]:
    """The folders a bundle may hold: those above its listed files."""
    return {parent.as_posix() for rel in manifest["files"] for parent in PurePosixPath(rel).parents
            if parent.as_posix() != "."}


def check_structure(manifest: Mapping[str, Any]) -> None:
    """Refuse a manifest that says anything the toolchain does not write for its ``format``."""
    kind = manifest.get("format")
    if kind == FORMAT:
        _check_engine(manifest)
    elif kind == JETSON_FORMAT:
        _check_jetson(manifest)
    else:
        raise BundleError(f"unknown bundle format {str(kind)[:80]!r}: expected {FORMAT} or {JETSON_FORMAT}")
    _check_specs(manifest)
    for rel in manifest["files"]:
        path = PurePosixPath(rel)
        if "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo"):
            raise BundleError(f"manifest lists byte-code, which bundles never hold: {rel}")
    signing = manifest.get("signing")
    if signing is not None and not (isinstance(signing, dict) and signing.get("algorithm") == "ed25519"
                                    and isinstance(signing.get("public_key"), str)
                                    and re.fullmatch(r"sha256:[0-9a-f]{64}", signing["public_key"])):
        raise BundleError("manifest 'signing' is not an ed25519 key record")


def _require_listed(manifest: Mapping[str, Any], names: Iterable[str], why: str) -> None:
    for name in names:
        if name not in manifest["files"]:
            raise BundleError(f"manifest does not list {name} ({why})")


def _check_engine(manifest: Mapping[str, Any]) -> None:
    from compressor.targets.compare import DEFAULT_TOLERANCES, Tolerance

    target, precision = manifest.get("target"), manifest.get("precision")
    if not isinstance(target, str) or target not in ENGINE_TARGETS:
        raise BundleError(f"manifest target {str(target)[:80]!r} is not one a bundle runs: {', '.join(ENGINE_TARGETS)}")
    if not isinstance(precision, str) or precision not in DEFAULT_TOLERANCES:
        raise BundleError(f"manifest precision {str(precision)[:80]!r} is not one of {', '.join(DEFAULT_TOLERANCES)}")
    if manifest.get("selftest", True) is not True:
        raise BundleError("manifest turns the self-test off: the toolchain never writes that for a "
                          f"{target} bundle")
    expected = Tolerance.for_precision(precision).to_dict()
    if manifest.get("selftest_tolerance") != expected:
        raise BundleError(f"manifest self-test tolerance {str(manifest.get('selftest_tolerance'))[:120]} is not "
                          f"the toolchain's for {precision}: {expected}")
    model = manifest.get("model")
    path = model.get("path") if isinstance(model, dict) else None
    parts = check_relative_path(path, "manifest model path").parts if isinstance(path, str) else ()
    if len(parts) != 2 or parts[0] != "model" or path not in manifest["files"]:
        raise BundleError(f"manifest model path {str(path)[:80]!r} is not a listed model/<file>")
    if not isinstance(model.get("options", {}), dict):
        raise BundleError("manifest model options are not a mapping")
    _require_listed(manifest, (GOLDEN,), "the self-test's golden inputs and outputs")
    _require_listed(manifest, ENGINE_FILES, "the bundle's runner")


def _check_jetson(manifest: Mapping[str, Any]) -> None:
    from compressor.core.tensor_spec import TensorSpec
    from compressor.targets.jetson import jetson_record
    from compressor.targets.tensorrt.plan import PRECISIONS

    precision = manifest.get("precision")
    if manifest.get("target") != "tensorrt" or not isinstance(precision, str) or precision not in PRECISIONS:
        raise BundleError(f"jetson manifest must be tensorrt at one of {', '.join(PRECISIONS)}")
    if manifest.get("selftest") is not False:
        raise BundleError("jetson manifest must say selftest false: its engine is built on the device")
    jetson = manifest.get("jetson")
    if not isinstance(jetson, dict):
        raise BundleError("jetson manifest has no 'jetson' build record")
    version = str(jetson.get("tensorrt_plan", ""))
    if not re.fullmatch(r"\d{1,3}\.\d{1,3}", version):
        raise BundleError(f"jetson manifest TensorRT version {version[:40]!r} is not MAJOR.MINOR")
    try:
        inputs = [TensorSpec.from_dict(s) for s in manifest.get("inputs") or []]
        expected = jetson_record(inputs, precision, tuple(int(v) for v in version.split(".")))
    except BundleError:
        raise
    except Exception as exc:  # any malformed spec: the record cannot be what the toolchain wrote
        raise BundleError(f"jetson manifest inputs do not make a build plan ({type(exc).__name__})") from None
    if jetson != expected:
        wrong = sorted(k for k in set(jetson) | set(expected) if jetson.get(k) != expected.get(k))
        raise BundleError(f"jetson manifest {', '.join(wrong)} differ from what the toolchain writes for these "
                          f"inputs at {precision} (TensorRT {version})")
    _require_listed(manifest, (expected["onnx"],), "the model the device builds")
    _require_listed(manifest, BUNDLE_FILES["jetson"], "the device steps")


def _check_specs(manifest: Mapping[str, Any]) -> None:
    from compressor.core.tensor_spec import DTYPES, TensorSpec

    for key in ("inputs", "outputs"):
        specs = manifest.get(key)
        if not isinstance(specs, list) or (key == "inputs" and not specs):
            raise BundleError(f"manifest '{key}' is not a list of tensor specs")
        for spec in specs:
            try:
                parsed = TensorSpec.from_dict(spec)
            except (KeyError, TypeError, ValueError, AttributeError):
                raise BundleError(f"manifest '{key}' holds something that is not a tensor spec") from None
            if not isinstance(parsed.name, str) or parsed.dtype not in DTYPES or not all(
                    (isinstance(d, int) and not isinstance(d, bool) and d > 0) or isinstance(d, str)
                    for d in parsed.shape):
                raise BundleError(f"manifest '{key}' holds a tensor spec with a bad name, dtype or shape")


def check_golden(path: Path, manifest: Mapping[str, Any]) -> None:
    """``golden.npz`` holds exactly one golden input per manifest input and one golden output per output
    (read from the zip's directory only: nothing is loaded or inflated)."""
    expected = {f"input.{s['name']}.npy" for s in manifest["inputs"]} | \
        {f"output.{s['name']}.npy" for s in manifest["outputs"]}
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (OSError, zipfile.BadZipFile, ValueError, EOFError):
        raise BundleError(f"{GOLDEN} is not a readable .npz") from None
    for name in sorted(expected - names):
        raise BundleError(f"{GOLDEN} lacks the golden {name[:-len('.npy')].replace('.', ' ', 1)}")
    for name in sorted(names - expected):
        raise BundleError(f"{GOLDEN} holds {shown(name)}, which is no input or output of the manifest")


def runtime_mismatches(manifest: Mapping[str, Any]) -> list[str]:
    """Listed runtime files (``run.py`` and the modules beside it) whose checksum is not this toolchain's copy."""
    from compressor.core.files import sha256_file
    from compressor.runtime import source

    return sorted(rel for rel, digest in manifest["files"].items()
                  if rel in RUNTIME_NAMES and digest != sha256_file(source(rel)))
