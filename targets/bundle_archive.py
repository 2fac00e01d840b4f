"""A bundle's files on disk and in its ``.tar.gz``: normal permissions when written, limits before extracting.

Reading an archive looks at every member header (count, type, path, declared size) and at the manifest
inside it BEFORE anything is extracted: more than :data:`MAX_MEMBERS` members, a member the manifest does not
list or whose size differs from the manifest's, or declared sizes far beyond what the archive could hold
compressed (a decompression bomb) are refused in one line, without inflating the rest.
"""
from __future__ import annotations

import os
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any

from compressor.core.errors import BundleError
from compressor.core.files import atomic_path, current_umask
from compressor.runtime import SCRIPTS
from compressor.targets.bundle_manifest import (
    MANIFEST,
    RESERVED,
    allowed_folders,
    check_file_set,
    listed_size,
    parse_manifest,
    shown,
)

MAX_MEMBERS = 2048
"""Most members (files and folders) an archive may hold; a bundle has a few dozen."""
MAX_TOTAL_BYTES = 32 * 1024 ** 3
"""Most bytes an archive may declare in all (a model larger than this is not an edge model)."""
MAX_RATIO = 100
"""Most declared bytes per compressed byte above :data:`RATIO_FLOOR` (model weights compress ~1.1x, text ~4x)."""
RATIO_FLOOR = 64 * 1024 ** 2
"""Declared bytes always allowed whatever the archive's size (golden data of zeros compresses very well)."""


def member_mode(rel: str, is_dir: bool) -> int:
    """The permissions a bundle entry gets: 0755 folders and scripts, 0644 other files."""
    return 0o755 if is_dir or rel in SCRIPTS else 0o644


def normalize_modes(folder: Path) -> None:
    """Give ``folder`` and everything in it normal permissions (see :func:`member_mode`) under the umask."""
    folder = Path(folder)
    umask = current_umask()
    for path in [folder, *folder.rglob("*")]:
        rel = path.relative_to(folder).as_posix()
        os.chmod(path, member_mode(rel, path.is_dir()) & ~umask)


def write_archive(folder: Path, archive: Path, name: str) -> Path:
    """Write ``folder`` as ``archive`` (``name/`` inside) atomically, members 0644/0755 owned by root."""
    def normal(info: tarfile.TarInfo) -> tarfile.TarInfo:
        rel = PurePosixPath(info.name).relative_to(name).as_posix() if info.name != name else ""
        info.mode = member_mode(rel, info.isdir())
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    with atomic_path(archive) as tmp:
        with tarfile.open(tmp, "w:gz") as tar:
            tar.add(folder, arcname=name, filter=normal)
        os.chmod(tmp, 0o644 & ~current_umask())
    return archive


def extract_archive(path: Path, dest: Path) -> Path:
    """Check ``path``'s members and manifest, then extract it into ``dest``; return the bundle's folder there."""
    with tarfile.open(path, "r:*") as tar:
        members, top = _members(tar, path)
        manifest_member = next((m for m in members if m.name == f"{top}/{MANIFEST}" and m.isfile()), None)
        if manifest_member is None:
            raise BundleError(f"{path} holds no {top}/{MANIFEST}")
        handle = tar.extractfile(manifest_member)
        manifest = parse_manifest(handle.read() if handle else b"", str(path))
        _check_members(members, top, manifest)
        tar.extractall(dest, members=members, filter="data")
    return Path(dest) / top


def _members(tar: tarfile.TarFile, path: Path) -> tuple[list[tarfile.TarInfo], str]:
    """Every member header (read one at a time, so counting stops early), each checked; and the top folder."""
    budget = max(RATIO_FLOOR, MAX_RATIO * os.path.getsize(path))
    members: list[tarfile.TarInfo] = []
    names: set[str] = set()
    declared = 0
    while (member := tar.next()) is not None:
        if len(members) >= MAX_MEMBERS:
            raise BundleError(f"{path} holds more than {MAX_MEMBERS} members: not a bundle")
        _check_member(member)
        declared += member.size
        if declared > min(budget, MAX_TOTAL_BYTES):
            raise BundleError(f"{path} declares {_size(declared)} of files in a {_size(os.path.getsize(path))} "
                              f"archive (at {shown(member.name)}): refused as a decompression bomb")
        if member.name.rstrip("/") in names:
            raise BundleError(f"archive holds {shown(member.name)} twice")
        names.add(member.name.rstrip("/"))
        members.append(member)
    tops = {PurePosixPath(m.name).parts[0] for m in members}
    if len(tops) != 1:
        raise BundleError(f"{path}: archive must hold one top folder, found {len(tops)}")
    return members, tops.pop()


def _check_member(member: tarfile.TarInfo) -> None:
    path = PurePosixPath(member.name)
    if (not member.name or member.name.startswith(("/", "\\")) or path.is_absolute() or ".." in path.parts
            or ":" in path.parts[0] or "\\" in member.name or "\0" in member.name):
        raise BundleError(f"unsafe path in archive: {shown(member.name)}")
    if member.issym() or member.islnk():
        raise BundleError(f"archive holds a link: {shown(member.name)}")
    if member.issparse() or not (member.isfile() or member.isdir()):
        raise BundleError(f"archive holds a special file: {shown(member.name)}")


def _check_members(members: list[tarfile.TarInfo], top: str, manifest: dict[str, Any]) -> None:
    """Members against the manifest: only listed files (each at its listed size) and the folders above them."""
    folders = allowed_folders(manifest)
    files = []
    for member in members:
        rel = PurePosixPath(member.name).relative_to(top).as_posix() if member.name.rstrip("/") != top else ""
        if member.isdir():
            if rel and rel not in folders:
                raise BundleError(f"bundle holds a folder not in its manifest: {shown(rel)}")
            continue
        files.append(rel)
        if rel in RESERVED:
            continue
        size = listed_size(manifest, rel)
        if size is not None and member.size != size:
            raise BundleError(f"archive member {rel} is {_size(member.size)}, the manifest says {_size(size)}")
    check_file_set(files, manifest)


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"
