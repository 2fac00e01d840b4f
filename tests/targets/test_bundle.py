import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from compressor.core.errors import BundleError
from compressor.core.files import sha256_file
from compressor.runtime import files_for
from compressor.targets.bundle import create_bundle, verify_bundle
from compressor.targets.profile import ProfileOptions
from compressor.targets.table import load_target

QUICK = ProfileOptions(warmup_s=0.05, min_iterations=5, min_duration_s=0.1)


@pytest.fixture(scope="module")
def ort_bundle(exported, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bundle")
    artifact = load_target("onnxruntime").build(exported["tiny_token_bilstm"].path, precision="fp32", out_dir=folder)
    return create_bundle(artifact, folder / "dist", name="ids", profile_options=QUICK)


def test_bundle_layout_and_manifest(ort_bundle):
    folder = ort_bundle.folder
    manifest = json.loads((folder / "manifest.json").read_text())
    assert {"name", "created", "toolchain", "runtime", "inputs", "outputs", "target", "precision", "files"} <= set(manifest)
    assert manifest["target"] == "onnxruntime" and manifest["inputs"][0]["dtype"] == "int64"
    assert set(manifest["files"]) == {"model/tiny_token_bilstm_fp32.onnx", "golden.npz", "profile.json",
                                      "README.md", *files_for("engine")}
    for rel, digest in manifest["files"].items():
        assert sha256_file(folder / rel) == digest
    profile = json.loads((folder / "profile.json").read_text())
    assert profile["latency_ms"]["median"] > 0 and "protocol" in profile
    with tarfile.open(ort_bundle.archive) as tar:
        assert all(m.name.startswith("ids") for m in tar.getmembers())


def test_verify_archive_and_folder(ort_bundle):
    report = verify_bundle(ort_bundle.archive)
    assert report["checksums"] == "ok" and report["selftest"]["selftest"] is True
    assert verify_bundle(ort_bundle.folder, run_selftest=False)["files"] == 4 + len(files_for("engine"))


def test_run_py_needs_only_numpy_and_onnxruntime(ort_bundle, runtime_only_python):
    """A separate environment where only numpy and onnxruntime are importable: no torch, no edge-compress."""
    python = runtime_only_python
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([str(python), "run.py", "--selftest"], cwd=ort_bundle.folder, capture_output=True,
                          text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert "selftest passed" in done.stdout
    done = subprocess.run([str(python), "run.py", "--profile", "--json", "--seconds", "0.2", "--iterations", "5",
                           "--batch", "2"], cwd=ort_bundle.folder, capture_output=True, text=True, env=env)
    result = json.loads(done.stdout)
    assert result["protocol"]["batch"] == 2 and result["latency_ms"]["p99"] >= result["latency_ms"]["median"]


def _copy_bundle(src: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(src, dest)
    return dest


def test_tampered_file_is_refused(ort_bundle, tmp_path):
    folder = _copy_bundle(ort_bundle.folder, tmp_path / "ids")
    with open(folder / "golden.npz", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(BundleError, match="checksum mismatch: golden.npz"):
        verify_bundle(folder)


def test_unlisted_and_missing_files_are_refused(ort_bundle, tmp_path):
    folder = _copy_bundle(ort_bundle.folder, tmp_path / "ids")
    (folder / "extra.py").write_text("print('hi')")
    with pytest.raises(BundleError, match="not in its manifest: extra.py"):
        verify_bundle(folder)
    (folder / "extra.py").unlink()
    (folder / "run.py").unlink()
    with pytest.raises(BundleError, match="missing: run.py"):
        verify_bundle(folder)


def test_selftest_failure_is_reported(ort_bundle, tmp_path):
    import numpy as np

    folder = _copy_bundle(ort_bundle.folder, tmp_path / "ids")
    with np.load(folder / "golden.npz") as data:
        arrays = {k: data[k] for k in data.files}
    arrays["output.logits"] = arrays["output.logits"] + 1.0
    np.savez(folder / "golden.npz", **arrays)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["golden.npz"] = sha256_file(folder / "golden.npz")
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="self-test failed"):
        verify_bundle(folder)


def _archive_with(tmp_path: Path, name: str, **kind) -> Path:
    path = tmp_path / "evil.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(name)
        if kind.get("symlink"):
            info.type, info.linkname = tarfile.SYMTYPE, kind["symlink"]
            tar.addfile(info)
        else:
            info.size = 2
            tar.addfile(info, io.BytesIO(b"hi"))
    return path


@pytest.mark.parametrize("member, kind, problem", [
    ("../escape.txt", {}, "unsafe path"),
    ("/etc/evil.txt", {}, "unsafe path"),
    ("ids/a/../../../x", {}, "unsafe path"),
    ("ids/link", {"symlink": "/etc/passwd"}, "link"),
])
def test_unsafe_archives_are_refused(tmp_path, member, kind, problem):
    with pytest.raises(BundleError, match=problem):
        verify_bundle(_archive_with(tmp_path, member, **kind))
    assert not (tmp_path.parent / "escape.txt").exists()


def test_not_an_archive(tmp_path):
    bad = tmp_path / "x.tar.gz"
    bad.write_bytes(b"not a tarball")
    with pytest.raises(BundleError, match="not a readable bundle"):
        verify_bundle(bad)
