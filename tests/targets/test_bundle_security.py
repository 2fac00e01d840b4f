"""A bundle nobody can forge: signed manifests, strict manifests, and no bundle code run before it is proven ours.

Every hostile bundle here is written by the test: a copy of a real bundle, edited, with its manifest's hashes
and sizes recomputed (what anyone can do). The edited ``run.py`` would create a marker file OUTSIDE the bundle
when run, so each refusal also proves the edited code never ran.
"""
from __future__ import annotations

import json
import py_compile
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compressor.core.files import sha256_file
from compressor.targets.bundle import create_bundle, verify_bundle
from compressor.targets.compare import Tolerance
from compressor.targets.signing import generate_keypair, load_private_key
from compressor.targets.table import load_target
from tests.support import assert_one_line_error, assert_untouched_outside, tree_state

PROFILE = {"latency_ms": {"median": 1.0}, "note": "given, not measured (tests)"}


@pytest.fixture(scope="module")
def made(exported, tmp_path_factory):
    """A key pair, and the same artifact bundled signed and unsigned."""
    root = tmp_path_factory.mktemp("made")
    keys = generate_keypair(root / "keys")
    (root / "engines").mkdir()
    artifact = load_target("onnxruntime").build(exported["tiny_token_bilstm"].path, precision="fp32",
                                                out_dir=root / "engines")
    signed = create_bundle(artifact, root / "dist", name="signed", profile=PROFILE, signing_key=keys.private)
    unsigned = create_bundle(artifact, root / "dist", name="unsigned", profile=PROFILE)
    return {"keys": keys, "signed": signed, "unsigned": unsigned}


def _copy(bundle_folder: Path, dest: Path) -> Path:
    shutil.copytree(bundle_folder, dest)
    return dest


def _rehash(folder: Path, edit_manifest=None) -> dict:
    """Recompute the manifest's hashes and sizes for the files now present (what a forger does); return it."""
    manifest = json.loads((folder / "manifest.json").read_text())
    paths = [p for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in ("manifest.json", "manifest.sig")]
    manifest["files"] = {p.relative_to(folder).as_posix(): sha256_file(p) for p in paths}
    manifest["sizes"] = {p.relative_to(folder).as_posix(): p.stat().st_size for p in paths}
    if edit_manifest:
        edit_manifest(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _plant_marker_code(script: Path, marker: Path) -> None:
    """Make ``script`` create ``marker`` the moment it runs (or is imported)."""
    script.write_text(_with_marker(script.read_text(), marker))


def _with_marker(source: str, marker: Path) -> str:
    future = "from __future__ import annotations\n"
    assert source.count(future) == 1
    return source.replace(future, f"{future}open({str(marker)!r}, 'w').write('forged code ran')\n")


def _refused(cli, root: Path, marker: Path, args, *needles: str) -> None:
    before = tree_state(root)
    result = cli("bundle", "verify", *args)
    assert_one_line_error(result, *needles)
    assert not marker.exists(), "verify ran the forged code"
    assert_untouched_outside(root, before)


def test_signed_bundle_verifies_with_its_key_and_prints_the_digest_made(made, cli):
    keys, signed = made["keys"], made["signed"]
    manifest = json.loads((signed.folder / "manifest.json").read_text())
    assert manifest["signing"] == {"algorithm": "ed25519", "public_key": keys.fingerprint}
    assert signed.signed_by == keys.fingerprint and signed.digest.startswith("sha256:")
    result = cli("bundle", "verify", signed.archive, "--key", keys.public, "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["signature"] == "verified" and report["digest"] == signed.digest
    assert report["selftest"]["selftest"] is True
    text = cli("bundle", "verify", signed.folder, "--key", keys.public, "--no-selftest")
    assert text.code == 0 and "signature verified" in text.out and signed.digest in text.out


def test_creation_prints_the_identity_that_verify_prints(made, cli, tmp_path):
    engines = made["keys"].private.parents[1] / "engines" / "tiny_token_bilstm_fp32.onnx"
    created = cli("bundle", engines, "--out", tmp_path / "dist", "--duration", "0.05")
    assert created.code == 0, created.err
    digest = next(line.split()[1] for line in created.out.splitlines() if line.startswith("identity "))
    assert "unsigned" in created.out
    verified = cli("bundle", "verify", tmp_path / "dist" / "tiny_token_bilstm_fp32-onnxruntime", "--no-selftest")
    assert verified.code == 0 and f"identity {digest} (unsigned: origin unverified" in verified.out
    assert cli("bundle", "verify", tmp_path / "dist" / "tiny_token_bilstm_fp32-onnxruntime.tar.gz",
               "--digest", digest, "--no-selftest").code == 0


def test_forged_signed_bundle_is_refused_by_its_key_without_running_it(made, cli, tmp_path):
    """The issue's forgery: run.py edited, manifest hashes recomputed: the signature no longer matches."""
    keys, marker = made["keys"], tmp_path / "marker"
    folder = _copy(made["signed"].folder, tmp_path / "work" / "signed")
    _plant_marker_code(folder / "run.py", marker)
    _rehash(folder)
    _refused(cli, tmp_path, marker, [folder, "--key", keys.public], "signature check failed")
    # without the key the digest differs from the one printed at creation, and the foreign code is not run
    _refused(cli, tmp_path, marker, [folder, "--digest", made["signed"].digest], "is not the expected")
    _refused(cli, tmp_path, marker, [folder], "run.py differ(s) from this toolchain's runtime")
    report = verify_bundle(folder, run_selftest=False)
    assert report["digest"] != made["signed"].digest and not marker.exists()
    # the control: the forged run.py does create the marker when someone runs it
    subprocess.run([sys.executable, "-I", "run.py", "--help"], cwd=folder, capture_output=True, timeout=120)
    assert marker.exists()


def test_resigned_or_stripped_forgery_is_refused(made, cli, tmp_path):
    keys, marker = made["keys"], tmp_path / "marker"
    other = generate_keypair(tmp_path / "forger")
    folder = _copy(made["signed"].folder, tmp_path / "work" / "b")
    _plant_marker_code(folder / "run.py", marker)
    from compressor.targets.signing import sign, signing_record

    forger_key = load_private_key(other.private)
    _rehash(folder, lambda m: m.update(signing=signing_record(forger_key)))
    (folder / "manifest.sig").write_bytes(sign(forger_key, (folder / "manifest.json").read_bytes()))
    assert verify_bundle(folder, public_key=other.public, run_selftest=False)["signature"] == "verified"
    _refused(cli, tmp_path, marker, [folder, "--key", keys.public], "signed by key", "not by the given key")
    (folder / "manifest.sig").unlink()
    _refused(cli, tmp_path, marker, [folder, "--key", keys.public], "not signed")


def _set_tolerance(manifest):
    manifest["selftest_tolerance"] = {**manifest["selftest_tolerance"], "atol": 1e30}


def _drop_golden(folder):
    (folder / "golden.npz").unlink()


def _golden_without_outputs(folder):
    import numpy as np

    with np.load(folder / "golden.npz") as data:
        inputs = {k: data[k] for k in data.files if k.startswith("input.")}
    np.savez(folder / "golden.npz", **inputs)


@pytest.mark.parametrize("edit_files, edit_manifest, needle", [
    (None, lambda m: m.update(selftest=False), "turns the self-test off"),
    (None, _set_tolerance, "not the toolchain's for fp32"),
    (None, lambda m: m.update(selftest_tolerance=Tolerance.for_precision("int8").to_dict()), "tolerance"),
    (None, lambda m: m["model"].update(path="../../etc/passwd"), "outside the bundle"),
    (None, lambda m: m["model"].update(path="/etc/passwd"), "outside the bundle"),
    (None, lambda m: m["model"].update(path="golden.npz"), "is not a listed model/<file>"),
    (_drop_golden, None, "does not list golden.npz"),
    (_golden_without_outputs, None, "golden.npz lacks the golden output logits"),
    (None, lambda m: m["files"].update({"../../x": "0" * 64}), "outside the bundle"),
    (None, lambda m: m.update(files=["run.py"]), "must map each file"),
    (None, lambda m: m.update(format="edge-compress-bundle/99"), "unknown bundle format"),
    (None, lambda m: m.update(target="tensorrt"), "not one a bundle runs"),
    (None, lambda m: m["sizes"].update({"golden.npz": 1}), "checksum mismatch: golden.npz"),
])
def test_unsigned_forgery_fails_the_strict_manifest(made, cli, tmp_path, edit_files, edit_manifest, needle):
    """Even without a key, a manifest the toolchain would never write is refused (the code is ours here,
    so only the manifest is forged; nothing runs and nothing outside changes)."""
    folder = _copy(made["unsigned"].folder, tmp_path / "work" / "b")
    if edit_files:
        edit_files(folder)
    _rehash(folder, edit_manifest)
    _refused(cli, tmp_path, tmp_path / "marker", [folder], needle)


def test_model_swapped_with_selftest_off_is_refused(made, cli, tmp_path):
    folder = _copy(made["unsigned"].folder, tmp_path / "work" / "b")
    model = folder / "model" / "tiny_token_bilstm_fp32.onnx"
    model.write_bytes(model.read_bytes()[:-100])
    _rehash(folder, lambda m: m.update(selftest=False))
    _refused(cli, tmp_path, tmp_path / "marker", [folder], "turns the self-test off")


def _crafted_pyc(folder: Path, marker: Path) -> Path:
    """``__pycache__/backends.cpython-XY.pyc`` compiled from a backends.py that creates ``marker``; an
    unchecked-hash .pyc, which Python's normal import uses whatever the source says."""
    evil = folder.parent / "evil_backends.py"
    evil.write_text(_with_marker((folder / "backends.py").read_text(), marker))
    tag = sys.implementation.cache_tag
    pyc = folder / "__pycache__" / f"backends.{tag}.pyc"
    pyc.parent.mkdir()
    py_compile.compile(str(evil), cfile=str(pyc), doraise=True,
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    evil.unlink()
    return pyc


def test_crafted_bytecode_is_refused_by_verify_and_ignored_by_the_scripts(made, cli, tmp_path):
    marker = tmp_path / "marker"
    folder = _copy(made["unsigned"].folder, tmp_path / "work" / "b")
    pyc = _crafted_pyc(folder, marker)
    rel = pyc.relative_to(folder).as_posix()
    _refused(cli, tmp_path, marker, [folder], f"not in its manifest: {rel}")
    _rehash(folder)  # listed now: still never what the toolchain writes
    _refused(cli, tmp_path, marker, [folder], "byte-code", rel)
    # the control: Python's own import machinery does load the crafted byte-code
    control = subprocess.run([sys.executable, "-I", "-c", "import sys; sys.path.insert(0, '.'); import backends"],
                             cwd=folder, capture_output=True, text=True)
    assert control.returncode == 0 and marker.exists(), control.stderr
    marker.unlink()
    # the bundle's own scripts never read it: the self-test runs from the sources and passes
    done = subprocess.run([sys.executable, "-I", "run.py", "--selftest", "--json"], cwd=folder, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and json.loads(done.stdout)["selftest"] is True, done.stderr
    assert not marker.exists(), "run.py imported the crafted byte-code"


@pytest.mark.parametrize("file", ["backends.py", "bundle.py"])
def test_edited_sibling_module_is_not_run_without_a_key(made, cli, tmp_path, file):
    marker = tmp_path / "marker"
    folder = _copy(made["unsigned"].folder, tmp_path / "work" / "b")
    _plant_marker_code(folder / file, marker)
    _rehash(folder)
    _refused(cli, tmp_path, marker, [folder], f"{file} differ(s) from this toolchain's runtime")
    files_only = cli("bundle", "verify", folder, "--no-selftest")  # files only: nothing runs, the user is told
    assert files_only.code == 0 and f"warning: {file} differ(s)" in files_only.out and "unsigned" in files_only.out
    assert not marker.exists()


def test_the_selftest_interpreter_ignores_our_environment(made, cli, tmp_path, monkeypatch):
    """PYTHONPATH, PYTHONSTARTUP and a numpy.py of the user's: none reaches the self-test's isolated Python."""
    marker, hostile = tmp_path / "marker", tmp_path / "hostile"
    hostile.mkdir()
    code = f"open({str(marker)!r}, 'w').write('environment code ran')\n"
    (hostile / "numpy.py").write_text(code)
    (hostile / "sitecustomize.py").write_text(code)
    (hostile / "startup.py").write_text(code)
    monkeypatch.setenv("PYTHONPATH", str(hostile))
    monkeypatch.setenv("PYTHONSTARTUP", str(hostile / "startup.py"))
    monkeypatch.setenv("PYTHONINSPECT", "1")
    result = cli("bundle", "verify", made["unsigned"].archive)
    assert result.code == 0 and "self-test passed" in result.out, result.err
    assert not marker.exists()
    assert not list(made["unsigned"].folder.rglob("__pycache__"))


def test_verify_with_a_key_refuses_an_unsigned_bundle(made, cli, tmp_path):
    _refused(cli, tmp_path, tmp_path / "marker", [made["unsigned"].archive, "--key", made["keys"].public],
             "not signed")


def test_jetson_bundle_build_command_cannot_be_edited(exported, cli, tmp_path):
    from compressor.targets.jetson import create_jetson_bundle

    bundle = create_jetson_bundle(exported["tiny_convnet"], tmp_path / "dist", precision="fp16")
    manifest = json.loads((bundle.folder / "manifest.json").read_text())
    assert manifest["name"] == bundle.folder.name == "tiny_convnet-jetson-fp16"
    ok = cli("bundle", "verify", bundle.archive)
    assert ok.code == 0 and "builds its engine on the device" in ok.out, ok.err
    folder = _copy(bundle.folder, tmp_path / "work" / "j")
    _rehash(folder, lambda m: m["jetson"].update(build_command=["sh", "-c", "touch /tmp/pwned"]))
    _refused(cli, tmp_path, tmp_path / "marker", [folder], "build_command differ")
    folder = _copy(bundle.folder, tmp_path / "work" / "k")
    _rehash(folder, lambda m: m.update(format="edge-compress-bundle/1"))
    _refused(cli, tmp_path, tmp_path / "marker", [folder], "not one a bundle runs")


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                                  max_size=5), max_leaves=25)
_FIELDS = ["format", "target", "precision", "model", "files", "sizes", "selftest", "selftest_tolerance", "inputs",
           "outputs", "jetson", "signing"]


@settings(max_examples=300, deadline=None)
@given(base=st.dictionaries(st.sampled_from(_FIELDS), _json, max_size=len(_FIELDS)),
       raw=st.binary(max_size=64))
def test_any_manifest_is_accepted_or_refused_in_one_line(made, base, raw):
    """Random manifests (valid JSON of any shape, or bytes): a BundleError or acceptance, never another error."""
    from compressor.core.errors import BundleError
    from compressor.targets.bundle_manifest import check_structure, parse_manifest

    real = json.loads((made["unsigned"].folder / "manifest.json").read_text())
    for data in (json.dumps({**real, **base}).encode(), json.dumps(base).encode(), raw):
        try:
            check_structure(parse_manifest(data, "fuzz"))
        except BundleError as exc:
            assert "\n" not in str(exc)
