"""A bundle's files: hostile archives refused before extraction, names and sidecars that cannot leave --out,
normal permissions, keys that are never overwritten. Every hostile file is written by the test."""
from __future__ import annotations

import dataclasses
import gzip
import io
import json
import os
import shutil
import stat
import tarfile
import time
from pathlib import Path

import pytest

from compressor.core.errors import BundleError
from compressor.targets.bundle import create_bundle, verify_bundle
from compressor.targets.bundle_archive import MAX_MEMBERS, extract_archive
from compressor.targets.table import load_target
from tests.support import (
    assert_no_partial_files,
    assert_one_line_error,
    assert_untouched_outside,
    tree_state,
)

PROFILE = {"latency_ms": {"median": 1.0}, "note": "given, not measured (tests)"}


@pytest.fixture(scope="module")
def artifact(exported, tmp_path_factory):
    folder = tmp_path_factory.mktemp("engines")
    return load_target("onnxruntime").build(exported["tiny_token_bilstm"].path, precision="fp32", out_dir=folder)


@pytest.fixture(scope="module")
def bundle(artifact, tmp_path_factory):
    return create_bundle(artifact, tmp_path_factory.mktemp("dist"), name="ids", profile=PROFILE)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


# ---------------------------------------------------------------- archives
def _tar_of(folder: Path, archive: Path, extra: dict[str, bytes] | None = None) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(f"{folder.name}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return archive


def _zero_bomb(path: Path, member: str, size: int) -> Path:
    """A .tar.gz of one ``size``-byte member of zeros, about size/1000 bytes on disk (gzip members concatenated)."""
    info = tarfile.TarInfo(member)
    info.size = size
    mib_of_zeros = gzip.compress(b"\0" * (1 << 20), compresslevel=9)
    with open(path, "wb") as out:
        out.write(gzip.compress(info.tobuf(format=tarfile.GNU_FORMAT)))
        for _ in range(size >> 20):
            out.write(mib_of_zeros)
        out.write(gzip.compress(b"\0" * 1024))
    return path


def test_a_gib_member_in_a_small_archive_is_refused_before_extracting(tmp_path, cli):
    bomb = _zero_bomb(tmp_path / "bomb.tar.gz", "ids/golden.npz", 1 << 30)
    assert bomb.stat().st_size < 2 << 20
    with tarfile.open(bomb) as tar:  # the control: it is a real archive of a real 1 GiB member
        assert tar.next().size == 1 << 30
    dest = tmp_path / "dest"
    dest.mkdir()
    started = time.perf_counter()
    with pytest.raises(BundleError, match="decompression bomb"):
        extract_archive(bomb, dest)
    assert time.perf_counter() - started < 5 and not any(dest.iterdir())
    before = tree_state(tmp_path)
    assert_one_line_error(cli("bundle", "verify", bomb), "1.0 GiB", "decompression bomb")
    assert_untouched_outside(tmp_path, before)


def test_thirty_thousand_members_are_refused_quickly(tmp_path, cli):
    archive = tmp_path / "many.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for i in range(30_000):
            tar.addfile(tarfile.TarInfo(f"ids/f{i}"), io.BytesIO(b""))
    started = time.perf_counter()
    assert_one_line_error(cli("bundle", "verify", archive), f"more than {MAX_MEMBERS} members")
    assert time.perf_counter() - started < 5


def test_archive_members_are_checked_against_the_manifest_before_extracting(bundle, tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    pyc = _tar_of(bundle.folder, tmp_path / "pyc.tar.gz", {"__pycache__/run.cpython-311.pyc": b"\0" * 16})
    with pytest.raises(BundleError, match="not in its manifest: __pycache__/run.cpython-311.pyc"):
        extract_archive(pyc, dest)
    grown = shutil.copytree(bundle.folder, tmp_path / "grown" / "ids")
    with open(grown / "golden.npz", "ab") as handle:
        handle.write(b"\0" * 4096)
    with pytest.raises(BundleError, match="golden.npz is .* the manifest says"):
        extract_archive(_tar_of(grown, tmp_path / "grown.tar.gz"), dest)
    assert not any(dest.iterdir())


def test_a_listed_file_missing_from_the_archive_is_refused(bundle, tmp_path, cli):
    folder = shutil.copytree(bundle.folder, tmp_path / "b" / "ids")
    (folder / "profile.json").unlink()
    assert_one_line_error(cli("bundle", "verify", _tar_of(folder, tmp_path / "less.tar.gz")),
                          "bundle file missing: profile.json")


def test_archive_of_a_fifo_or_twice_the_same_member_is_refused(bundle, tmp_path):
    fifo = tmp_path / "fifo.tar.gz"
    with tarfile.open(fifo, "w:gz") as tar:
        info = tarfile.TarInfo("ids/pipe")
        info.type = tarfile.FIFOTYPE
        tar.addfile(info)
    with pytest.raises(BundleError, match="special file"):
        verify_bundle(fifo)
    twice = _tar_of(bundle.folder, tmp_path / "twice.tar.gz", {"run.py": b"print('second run.py')\n"})
    with pytest.raises(BundleError, match="twice"):
        verify_bundle(twice)


# ---------------------------------------------------------------- names and sidecars
@pytest.mark.parametrize("name", [".", "..", "../../x", "a/b", "a\\b", ".hidden", "ABSOLUTE"])
def test_bad_names_are_refused_and_nothing_is_written(artifact, cli, tmp_path, name):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("the user's file")
    if name == "ABSOLUTE":
        name = str(tmp_path / "elsewhere")
    before = tree_state(tmp_path)
    result = cli("bundle", artifact.path, "--out", out, "--name", name, "--duration", "0.05")
    assert_one_line_error(result, "must be a plain folder name")
    assert_untouched_outside(tmp_path, before)
    assert (out / "keep.txt").read_text() == "the user's file"


def test_an_existing_folder_that_is_not_a_bundle_is_never_replaced(artifact, cli, tmp_path):
    out = tmp_path / "out"
    (out / "mine").mkdir(parents=True)
    (out / "mine" / "thesis.tex").write_text("years of work")
    before = tree_state(tmp_path)
    result = cli("bundle", artifact.path, "--out", out, "--name", "mine", "--duration", "0.05")
    assert_one_line_error(result, "exists and is not a bundle")
    assert_untouched_outside(tmp_path, before)
    assert_no_partial_files(out)
    first = cli("bundle", artifact.path, "--out", out, "--name", "ids", "--duration", "0.05")
    again = cli("bundle", artifact.path, "--out", out, "--name", "ids", "--duration", "0.05")
    assert first.code == again.code == 0, again.err  # a bundle of that name is replaced by the new one
    assert_no_partial_files(out)


def _copied_artifact(artifact, folder: Path) -> Path:
    folder.mkdir(parents=True)
    shutil.copyfile(artifact.path, folder / artifact.path.name)
    shutil.copyfile(artifact.sidecar, folder / artifact.sidecar.name)
    return folder / artifact.path.name


@pytest.mark.parametrize("edit, needle", [
    (lambda d: d.update(files=[d["path"], "../../x"]), "outside its folder: ../../x"),
    (lambda d: d.update(files=[d["path"], "/etc/hostname"]), "outside its folder: /etc/hostname"),
    (lambda d: d.update(path="../../x"), "outside its folder"),
    (lambda d: d.update(files=[d["path"], 7]), "not a relative path"),
])
def test_sidecar_paths_stay_inside_their_folder(artifact, cli, tmp_path, edit, needle):
    model = _copied_artifact(artifact, tmp_path / "a" / "b")
    (tmp_path / "x").write_text("kept")
    sidecar = model.with_name(model.name + ".artifact.json")
    data = json.loads(sidecar.read_text())
    edit(data)
    sidecar.write_text(json.dumps(data))
    before = tree_state(tmp_path)
    assert_one_line_error(cli("bundle", model, "--out", tmp_path / "out", "--duration", "0.05"), needle)
    assert_untouched_outside(tmp_path, before, tmp_path / "out")
    assert (tmp_path / "x").read_text() == "kept"


def test_create_bundle_refuses_an_artifact_file_outside_its_folder(artifact, tmp_path):
    (tmp_path / "x").write_text("kept")
    hostile = dataclasses.replace(artifact, files=(*artifact.files, "../../x"))
    before = tree_state(tmp_path)
    with pytest.raises(BundleError, match="outside"):
        create_bundle(hostile, tmp_path / "out", name="b", profile=PROFILE)
    assert_untouched_outside(tmp_path, before, tmp_path / "out")
    with pytest.raises(BundleError, match="replace one of the bundle's own files"):
        create_bundle(artifact, tmp_path / "out", name="b", profile=PROFILE, extras={"manifest.sig": b"forged"})
    assert_no_partial_files(tmp_path / "out")


# ---------------------------------------------------------------- permissions, relative paths
def test_bundle_files_get_normal_permissions_inside_and_in_the_tar(artifact, tmp_path, umask_022):
    made = create_bundle(artifact, tmp_path / "dist", name="perm", profile=PROFILE)
    modes = {p.relative_to(made.folder).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in made.folder.rglob("*")}
    assert stat.S_IMODE(made.folder.stat().st_mode) == 0o755 and modes["model"] == 0o755
    assert modes["run.py"] == 0o755 and modes["manifest.json"] == modes["profile.json"] == modes["golden.npz"] == 0o644
    assert stat.S_IMODE(made.archive.stat().st_mode) == 0o644
    with tarfile.open(made.archive) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["perm"].mode == members["perm/model"].mode == members["perm/run.py"].mode == 0o755
    assert members["perm/manifest.json"].mode == members["perm/backends.py"].mode == 0o644
    assert {(m.uid, m.gid) for m in members.values()} == {(0, 0)}


def test_a_private_umask_is_respected(artifact, tmp_path):
    old = os.umask(0o077)
    try:
        made = create_bundle(artifact, tmp_path / "dist", name="private", profile=PROFILE)
    finally:
        os.umask(old)
    assert stat.S_IMODE((made.folder / "manifest.json").stat().st_mode) == 0o600
    with tarfile.open(made.archive) as tar:  # the archive's members carry the normal modes to the device
        assert tar.getmember("private/manifest.json").mode == 0o644


def test_verify_a_relative_folder(bundle, cli, monkeypatch):
    monkeypatch.chdir(bundle.folder.parent)
    result = cli("bundle", "verify", bundle.folder.name)
    assert result.code == 0 and "self-test passed" in result.out, result.err


# ---------------------------------------------------------------- keys
def test_keygen_writes_a_private_and_a_public_key_and_never_overwrites(cli, tmp_path, umask_022):
    made = cli("bundle", "keygen", "--out", tmp_path / "keys", "--json")
    assert made.code == 0, made.err
    keys = json.loads(made.out)
    private, public = Path(keys["private_key"]), Path(keys["public_key"])
    assert stat.S_IMODE(private.stat().st_mode) == 0o600 and stat.S_IMODE(public.stat().st_mode) == 0o644
    assert b"PRIVATE KEY" in private.read_bytes() and b"PUBLIC KEY" in public.read_bytes()
    before = tree_state(tmp_path)
    assert_one_line_error(cli("bundle", "keygen", "--out", tmp_path / "keys"), "already exists")
    assert_one_line_error(cli("bundle", "keygen", "--out", tmp_path / "keys", "--name", "../k"), "plain file name")
    assert_untouched_outside(tmp_path, before)


def test_wrong_key_files_are_one_line_errors(artifact, bundle, cli, tmp_path):
    cli("bundle", "keygen", "--out", tmp_path / "keys")
    private, public = tmp_path / "keys" / "bundle-signing.key", tmp_path / "keys" / "bundle-signing.pub"
    garbage = tmp_path / "garbage.key"
    garbage.write_bytes(bytes(range(64)))
    out = tmp_path / "out"
    before = tree_state(tmp_path)
    create = ("bundle", artifact.path, "--out", out, "--duration", "0.05", "--sign-key")
    assert_one_line_error(cli(*create, public), "is a public key")
    assert_one_line_error(cli(*create, garbage), "not a PEM or OpenSSH private key")
    assert_one_line_error(cli(*create, tmp_path / "none.key"), "does not exist")
    assert_one_line_error(cli("bundle", "verify", bundle.folder, "--key", private), "is a private key")
    assert_one_line_error(cli("bundle", "verify", bundle.folder, "--key", garbage), "not a PEM or OpenSSH public key")
    assert_untouched_outside(tmp_path, before)


def test_the_environment_names_the_signing_key(artifact, cli, tmp_path, monkeypatch):
    from compressor.targets.signing import SIGNING_KEY_ENV, resolve_signing_key

    pair = json.loads(cli("bundle", "keygen", "--out", tmp_path / "keys", "--json").out)
    monkeypatch.setenv(SIGNING_KEY_ENV, pair["private_key"])
    assert resolve_signing_key() is not None
    made = cli("bundle", artifact.path, "--out", tmp_path / "out", "--duration", "0.05", "--json")
    assert made.code == 0, made.err
    assert json.loads(made.out)["signed_by"] == pair["fingerprint"]
    checked = cli("bundle", "verify", json.loads(made.out)["archive"], "--key", pair["public_key"], "--no-selftest")
    assert checked.code == 0 and "signature verified" in checked.out
    monkeypatch.setenv(SIGNING_KEY_ENV, str(tmp_path / "missing.key"))
    assert_one_line_error(cli("bundle", artifact.path, "--out", tmp_path / "out2"), "missing.key", "does not exist")
    assert not (tmp_path / "out2").exists()


GARBAGE_KEYS = [b"", b"\0" * 64, bytes(range(256)), b"ssh-ed25519 AAAA", b"ssh-ed25519 !!!not-base64",
                b"ssh-dss AAAAB3NzaC1kc3MAAACBA", b")(U)5L\xa1\x05\xb2JT\xdfW\xb0j\x9a\xa9",
                b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
                b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                b"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n"]


@pytest.mark.parametrize("seed", range(20))
def test_any_bytes_as_a_key_are_a_one_line_bundle_error(tmp_path, seed):
    import random

    from compressor.targets.signing import load_private_key, load_public_key

    data = (GARBAGE_KEYS[seed] if seed < len(GARBAGE_KEYS)
            else random.Random(seed).randbytes(random.Random(seed).randint(1, 300)))
    path = tmp_path / "k"
    path.write_bytes(data)
    for load in (load_private_key, load_public_key):
        with pytest.raises(BundleError) as info:
            load(path)
        assert "\n" not in str(info.value)


def test_keys_of_another_algorithm_are_named(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from compressor.targets.signing import load_private_key, load_public_key

    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "ec.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
    (tmp_path / "ec.pub").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(BundleError, match="not an Ed25519 key"):
        load_private_key(tmp_path / "ec.key")
    with pytest.raises(BundleError, match="not an Ed25519 key"):
        load_public_key(tmp_path / "ec.pub")
    encrypted = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw"))
    (tmp_path / "enc.key").write_bytes(encrypted)
    with pytest.raises(BundleError, match="encrypted"):
        load_private_key(tmp_path / "enc.key")
