"""Atomic file output: write to a temporary name beside the target, rename when complete.

Files get the mode a plain ``open()`` would give them (``0o666 & ~umask``) and folders ``0o777 & ~umask``, not the
private modes of :mod:`tempfile`. A write that fails (a full disk, a read-only folder) is one line naming the file
being written, never the temporary name."""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

from compressor.core.errors import CompressError

# errors that say the destination cannot take the bytes, whichever file the failing call names
_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}


class OutputWriteError(CompressError):
    """An output that could not be written: a full disk, a read-only or vanished folder."""


def ensure_writable_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` if needed and check it is a writable folder; one-line error otherwise."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CompressError(f"cannot create output folder {folder}: {exc.strerror or exc}") from None
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise CompressError(f"output folder {folder} is not writable")
    return folder


def current_umask() -> int:
    """The process's umask, read without changing it where the system tells (Linux ``/proc``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode ``open()`` gives a new file: ``0o666`` less the umask."""
    return 0o666 & ~current_umask()


def folder_mode() -> int:
    """The mode ``mkdir`` gives a new folder: ``0o777`` less the umask."""
    return 0o777 & ~current_umask()


def make_temp_dir(parent: str | os.PathLike, prefix: str, suffix: str = ".tmp") -> Path:
    """A new uniquely named folder in ``parent`` with the usual folder mode (``mkdtemp`` makes it 0700)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=parent))
    os.chmod(folder, folder_mode())
    return folder


def _write_failure(exc: BaseException, dest: Path, temp: Path) -> OutputWriteError | None:
    """The one-line error naming ``dest`` for a failure while writing it through ``temp`` (None: not a write
    failure of ours, re-raise as it is). Paths under ``temp`` are named by where they are going."""
    if isinstance(exc, CompressError):
        return None
    temp_text = str(temp)

    def renamed(text: str) -> str:
        return text.replace(temp_text, str(dest))

    if isinstance(exc, OSError):
        named = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
        ours = [n for n in named if n == temp_text or n.startswith(temp_text + os.sep)]
        if exc.errno in _NO_ROOM or ours:
            where = renamed(ours[0]) if ours else str(dest)
            return OutputWriteError(f"cannot write {where}: {exc.strerror or exc}")
        return None
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if temp_text in message:  # a library's own error about the file it was writing
        return OutputWriteError(f"cannot write {dest}: {renamed(message)}")
    return None


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success rename it onto ``dest``, on error remove it.

    The temporary file already exists (mode ``0o666 & ~umask``); a failure to write it is an
    :class:`OutputWriteError` naming ``dest``."""
    dest = Path(dest)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".tmp{dest.suffix}", dir=dest.parent)
    except OSError as exc:
        raise OutputWriteError(f"cannot write {dest}: {exc.strerror or exc}") from None
    try:
        os.fchmod(fd, file_mode())
    finally:
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    except BaseException as exc:
        failure = _write_failure(exc, dest, tmp_path) if isinstance(exc, Exception) else None
        if failure is not None:
            raise failure from None
        raise
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``dest``; on success it replaces ``dest`` whole.

    Folders get mode ``0o777 & ~umask``; a failure to write inside is an :class:`OutputWriteError` naming the
    file under ``dest`` it was for (or ``dest``)."""
    dest = Path(dest)
    try:
        tmp = make_temp_dir(dest.parent, prefix=f".{dest.name}.")
    except OSError as exc:
        raise OutputWriteError(f"cannot write {dest}: {exc.strerror or exc}") from None
    try:
        yield tmp
        if dest.exists():
            old = make_temp_dir(dest.parent, prefix=f".{dest.name}.", suffix=".old")
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    except Exception as exc:
        failure = _write_failure(exc, dest, tmp)
        if failure is not None:
            raise failure from None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(dest: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON atomically."""
    with atomic_path(dest) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return Path(dest)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------- staging: many files replaced as one
@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, *, blocking: bool = True) -> Iterator[bool]:
    """Hold an exclusive advisory lock on ``folder`` itself (no lock file is left behind). Yields True when held;
    with ``blocking=False`` yields False at once when another process holds it."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing releases the lock


@contextlib.contextmanager
def staging_dir(parent: str | os.PathLike, prefix: str) -> Iterator[Path]:
    """A fresh folder ``parent/<prefix>XXXX.tmp``, locked while in use and removed afterwards whatever happens.
    Folders of the same prefix that no live process holds (left by a killed run) are removed first.

    The folder is made under another name (``.new``) and locked before it is renamed to ``.tmp``, so a ``.tmp``
    folder is locked for as long as its process lives: another process sweeping at that moment never takes a
    folder just made. A ``.new`` folder is swept only when unlocked and over an hour old (a process killed
    between the two steps)."""
    parent = Path(parent)
    _sweep(parent, f"{prefix}*{STAGING_SUFFIX}", min_age_s=0.0)
    _sweep(parent, f"{prefix}*{NEW_SUFFIX}", min_age_s=3600.0)
    with contextlib.ExitStack() as held:
        try:
            new = make_temp_dir(parent, prefix=prefix, suffix=NEW_SUFFIX)
            held.enter_context(folder_lock(new))  # the lock is on the folder itself, so it survives the rename
            folder = new.with_name(new.name[: -len(NEW_SUFFIX)] + STAGING_SUFFIX)
            os.rename(new, folder)
        except OSError as exc:
            raise OutputWriteError(f"cannot write in {parent}: {exc.strerror or exc}") from None
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)


STAGING_SUFFIX, NEW_SUFFIX = ".tmp", ".new"


def _sweep(parent: Path, pattern: str, min_age_s: float) -> None:
    """Remove the folders matching ``pattern`` in ``parent`` that no process holds (and older than ``min_age_s``)."""
    for stale in parent.glob(pattern):
        with contextlib.suppress(OSError):
            if not stale.is_dir() or stale.is_symlink() or time.time() - stale.stat().st_mtime < min_age_s:
                continue
            with folder_lock(stale, blocking=False) as free:
                if free:
                    shutil.rmtree(stale, ignore_errors=True)


def publish_entries(staging: str | os.PathLike, dest: str | os.PathLike, names: Iterable[str], *,
                    last: Iterable[str] = ()) -> None:
    """Move the files and folders ``names`` and then ``last`` from ``staging`` into ``dest``, each replacing the
    entry of that name; a name that ``staging`` lacks is removed from ``dest`` (so nothing of an older output
    is left looking current). Old ``last`` entries (what describes the others: a sidecar, a report) are moved
    away first and the new ones in at the end, so they never describe entries of the other generation.

    Holds :func:`folder_lock` on ``dest`` throughout, so two publishers into one folder take turns; Ctrl-C and
    SIGTERM wait until the renames are done; if a rename fails, those already made are undone."""
    from compressor.core.interrupts import interrupts_deferred

    staging, dest = Path(staging), Path(dest)
    names, last = list(names), list(last)
    with folder_lock(dest), interrupts_deferred():
        trash = make_temp_dir(dest, prefix=".replaced-", suffix=".old")
        done: list[tuple[Path, Path]] = []

        def move(source: Path, target: Path) -> None:
            if source.exists() or source.is_symlink():
                os.replace(source, target)
                done.append((source, target))

        try:
            for name in last:
                move(dest / name, trash / name)
            for name in names:
                move(dest / name, trash / name)
                move(staging / name, dest / name)
            for name in last:
                move(staging / name, dest / name)
        except OSError as exc:
            for source, target in reversed(done):
                with contextlib.suppress(OSError):
                    os.replace(target, source)
            raise OutputWriteError(f"cannot replace the contents of {dest}: {exc.strerror or exc}") from None
        finally:
            shutil.rmtree(trash, ignore_errors=True)


@contextlib.contextmanager
def errors_named_at(staging: str | os.PathLike, dest: str | os.PathLike) -> Iterator[None]:
    """Errors raised in the block that name a path inside ``staging`` name it where it is going, in ``dest``
    (a user knows the output folder, not the staging folder inside it)."""
    staging_text = str(staging)
    candidates = {staging_text, str(Path(staging).resolve())}

    def renamed(text: str) -> str:
        for prefix in sorted(candidates, key=len, reverse=True):
            text = text.replace(prefix, str(dest))
        return text

    try:
        yield
    except CompressError as exc:
        if any(c in str(exc) for c in candidates):
            exc.args = (renamed(str(exc)), *exc.args[1:])
        raise
    except OSError as exc:
        named = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
        inside = [n for n in named if any(n.startswith(c) for c in candidates)]
        if inside:
            raise OutputWriteError(f"cannot write {renamed(inside[0])}: {exc.strerror or exc}") from None
        raise


@contextlib.contextmanager
def temp_files_in(folder: str | os.PathLike) -> Iterator[Path]:
    """Make :mod:`tempfile` (and every library that uses it: quantizers, calibrators) create its temporary files
    and folders in ``folder`` while the block runs, so they go when ``folder`` goes, even after a hard kill."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    previous = tempfile.tempdir
    tempfile.tempdir = str(folder)
    try:
        yield folder
    finally:
        tempfile.tempdir = previous
