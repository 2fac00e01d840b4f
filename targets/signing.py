"""Bundle identity: Ed25519 keys the user keeps, a signature over a bundle's manifest, and its digest.

A bundle's manifest lists the sha256 of every file, so the manifest's own sha256 (its *digest*) names the
whole bundle. Anyone who edits a file can recompute the manifest, so the digest proves nothing unless it is
compared with the one printed when the bundle was made; a signature by a private key that only the user
holds (``manifest.sig``, base64 of the 64-byte Ed25519 signature over the manifest's bytes as written) can
not be recomputed. Keys are files: the private key as unencrypted PKCS#8 PEM, mode 0600; the public key as
SubjectPublicKeyInfo PEM (an OpenSSH ``ssh-ed25519`` line is read too). ``EDGE_COMPRESS_SIGNING_KEY``
names the private key for commands that bundle without a ``--sign-key`` flag (``compress run``).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from compressor.core.errors import BundleError
from compressor.core.files import current_umask

SIGNING_KEY_ENV = "EDGE_COMPRESS_SIGNING_KEY"
"""Environment variable naming the private key file that bundles are signed with when no key is passed."""
SIGNATURE_FILE = "manifest.sig"
ALGORITHM = "ed25519"
MAX_KEY_BYTES = 64 * 1024
MAX_SIGNATURE_BYTES = 1024


@dataclass(frozen=True)
class KeyPair:
    """Where ``generate_keypair`` wrote the keys, and the public key's fingerprint."""

    private: Path
    public: Path
    fingerprint: str


def manifest_digest(manifest_bytes: bytes) -> str:
    """The bundle's identity: ``sha256:<hex>`` of its manifest's bytes as written."""
    return "sha256:" + hashlib.sha256(manifest_bytes).hexdigest()


def fingerprint(public_key: Ed25519PublicKey) -> str:
    """``sha256:<hex>`` of the raw 32-byte public key (recorded in the manifest of a signed bundle)."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def generate_keypair(out_dir: str | Path, name: str = "bundle-signing") -> KeyPair:
    """Write a new Ed25519 key pair as ``out_dir/<name>.key`` (0600) and ``<name>.pub``; never overwrite a key."""
    if not name or name in (".", "..") or any(sep in name for sep in ("/", "\\", "\0")):
        raise BundleError(f"key name '{name}' must be a plain file name")
    folder = Path(out_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BundleError(f"cannot create key folder {folder}: {exc.strerror or exc}") from None
    private_path, public_path = folder / f"{name}.key", folder / f"{name}.pub"
    for path in (private_path, public_path):
        if path.exists() or path.is_symlink():
            raise BundleError(f"{path} already exists: keys are never overwritten (choose another --out or --name)")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    _write_new(private_path, private_pem, 0o600)
    try:
        _write_new(public_path, public_pem, 0o644 & ~current_umask())
    except BaseException:
        private_path.unlink(missing_ok=True)
        raise
    return KeyPair(private_path, public_path, fingerprint(key.public_key()))


def _write_new(dest: Path, data: bytes, mode: int) -> None:
    """Write ``data`` under a temporary name (created 0600) and link it to ``dest`` only if ``dest`` is absent."""
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode)
        try:
            os.link(tmp, dest)  # fails if dest appeared meanwhile: never replaces a key
        except FileExistsError:
            raise BundleError(f"{dest} already exists: keys are never overwritten") from None
        except OSError as exc:
            raise BundleError(f"cannot write {dest}: {exc.strerror or exc}") from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def _read_key_file(path: str | Path, what: str) -> bytes:
    path = Path(path)
    try:
        if not path.is_file():
            raise BundleError(f"{what} {path} does not exist or is not a file")
        if path.stat().st_size > MAX_KEY_BYTES:
            raise BundleError(f"{what} {path} is too large to be a key file")
        return path.read_bytes()
    except OSError as exc:
        raise BundleError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in ``path`` (PKCS#8 PEM or OpenSSH); one-line BundleError otherwise."""
    data = _read_key_file(path, "signing key")
    key = None
    for loader in (serialization.load_pem_private_key, serialization.load_ssh_private_key):
        try:
            key = loader(data, password=None)
            break
        except TypeError:
            raise BundleError(f"signing key {path} is encrypted; edge-compress reads unencrypted keys only") from None
        except (ValueError, binascii.Error, AttributeError, UnsupportedAlgorithm, IndexError):
            continue
    if key is None:
        if b"PUBLIC KEY" in data or data.startswith(b"ssh-ed25519"):
            raise BundleError(f"{path} is a public key; --sign-key takes the private key (.key)")
        raise BundleError(f"signing key {path} is not a PEM or OpenSSH private key")
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError(f"signing key {path} is a {type(key).__name__}, not an Ed25519 key")
    return key


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    """The Ed25519 public key in ``path`` (PEM or an OpenSSH ``ssh-ed25519`` line); one-line BundleError otherwise."""
    data = _read_key_file(path, "public key")
    if b"PRIVATE KEY" in data:
        raise BundleError(f"{path} is a private key; --key takes the public key (.pub): keep the private key off "
                          f"the device")
    key = None
    for loader in (serialization.load_pem_public_key, serialization.load_ssh_public_key):
        try:
            key = loader(data)
            break
        except (ValueError, binascii.Error, AttributeError, TypeError, UnsupportedAlgorithm, IndexError):
            continue
    if key is None:
        raise BundleError(f"public key {path} is not a PEM or OpenSSH public key")
    if not isinstance(key, Ed25519PublicKey):
        raise BundleError(f"public key {path} is a {type(key).__name__}, not an Ed25519 key")
    return key


def signing_key_from_env() -> Ed25519PrivateKey | None:
    """The private key named by ``EDGE_COMPRESS_SIGNING_KEY``, or None when it is unset or empty."""
    path = os.environ.get(SIGNING_KEY_ENV, "").strip()
    return load_private_key(path) if path else None


def resolve_signing_key(path: str | Path | None = None) -> Ed25519PrivateKey | None:
    """The key to sign a bundle with: ``path`` if given, else ``EDGE_COMPRESS_SIGNING_KEY``, else None."""
    return load_private_key(path) if path else signing_key_from_env()


def signing_record(key: Ed25519PrivateKey | None) -> dict[str, str] | None:
    """What a manifest records of its signer: ``{"algorithm": "ed25519", "public_key": fingerprint}``."""
    return None if key is None else {"algorithm": ALGORITHM, "public_key": fingerprint(key.public_key())}


def sign(key: Ed25519PrivateKey, manifest_bytes: bytes) -> bytes:
    """The content of ``manifest.sig``: base64 of the signature over the manifest's bytes, and a newline."""
    return base64.b64encode(key.sign(manifest_bytes)) + b"\n"


def check_signature(public_key: Ed25519PublicKey, manifest: dict, manifest_bytes: bytes,
                    signature_file: bytes | None) -> str:
    """Raise BundleError unless ``signature_file`` is ``public_key``'s signature of ``manifest_bytes``.

    Returns the key's fingerprint. ``manifest`` (the parsed bytes) names the key the bundle says it was
    signed with, so a bundle signed by another key is named as such rather than as tampered.
    """
    expected = fingerprint(public_key)
    if signature_file is None:
        raise BundleError(f"bundle is not signed (no {SIGNATURE_FILE}): its origin cannot be checked with --key")
    record = manifest.get("signing")
    signer = record.get("public_key") if isinstance(record, dict) else None
    if signer != expected:
        named = signer if isinstance(signer, str) and signer.isprintable() else repr(signer)
        raise BundleError(f"bundle was signed by key {named[:80] or 'unknown'}, not by the given key {expected}")
    if len(signature_file) > MAX_SIGNATURE_BYTES:
        raise BundleError(f"{SIGNATURE_FILE} is not a signature")
    try:
        signature = base64.b64decode(signature_file.strip(), validate=True)
        public_key.verify(signature, manifest_bytes)
    except (binascii.Error, ValueError, InvalidSignature):
        raise BundleError("signature check failed: manifest.json is not the one the key's holder signed") from None
    return expected
