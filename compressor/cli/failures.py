"""How the ``compress`` command line reports a failure: one line on stderr and an exit status.

Exit status: 0 success; 1 a check failed (``compare``); 2 the input or the machine stopped the command
(bad input, a missing or unreadable file, a full disk, out of memory); 3 an internal error, a bug (one line;
``compress --debug`` or ``COMPRESS_DEBUG=1`` shows the traceback); 130 interrupted (Ctrl-C).
"""
from __future__ import annotations

import errno
import os
import re
import traceback
from pathlib import Path

import click

from compressor.core.errors import CompressError

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_BUG = 3
EXIT_INTERRUPTED = 130
DEBUG_ENV = "COMPRESS_DEBUG"

_DISK_FULL = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
              errno.EFBIG: "file too large for this file system or the file size limit"}
_DISK_FULL_TEXT = ("No space left on device", "Disk quota exceeded")
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp(?:\.[^.]*)?$")
"""Temporary names of compressor.core.files (``.NAME.abcd1234.tmp[.SUFFIX]``): reported as ``NAME``."""


class Interrupted(Exception):
    """Ctrl-C inside a command (raised instead of KeyboardInterrupt so click does not print a blank line)."""


class EndOfFile(CompressError):
    """An ``EOFError`` inside a command: a file ended before its data did (click would call it an abort)."""


def debug_from_env() -> bool:
    """True when ``COMPRESS_DEBUG`` asks for tracebacks of internal errors."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def one_line(text: str) -> str:
    """``text`` folded onto one line (its lines joined by spaces)."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def user_path(filename: object) -> str:
    """The path a user knows: temporary names of atomic writes are reported as the file they become."""
    if filename is None:
        return ""
    text = os.fsdecode(filename) if isinstance(filename, (str, bytes, os.PathLike)) else str(filename)
    parts = [(_TEMP_NAME.match(part) or {"name": part})["name"] if part not in ("", "/") else part
             for part in Path(text).parts]
    return str(Path(*parts)) if parts else text


def usage_line(exc: click.UsageError) -> str:
    """A click usage error (unknown option, bad value) as one line pointing at the command's help."""
    command = exc.ctx.command_path if exc.ctx is not None else "compress"
    return f"error: {one_line(exc.format_message()).rstrip('.')} (see '{command} --help')"


def describe(exc: BaseException) -> tuple[str, int] | None:
    """(one stderr line, exit status) for a failure the user or the machine caused; None for a bug."""
    if isinstance(exc, Interrupted):
        return "interrupted", EXIT_INTERRUPTED
    if isinstance(exc, CompressError):
        return f"error: {one_line(str(exc)) or type(exc).__name__}", EXIT_BAD_INPUT
    disk = _disk_full(exc)
    if disk is not None:
        return disk, EXIT_BAD_INPUT
    if isinstance(exc, MemoryError):
        detail = one_line(str(exc))
        return (f"error: out of memory{f' ({detail})' if detail else ''}: try a smaller batch, shape or data set",
                EXIT_BAD_INPUT)
    if isinstance(exc, RecursionError):
        return "error: the input is nested too deeply to read (maximum recursion depth exceeded)", EXIT_BAD_INPUT
    if isinstance(exc, OSError):
        return f"error: {_os_error_text(exc)}", EXIT_BAD_INPUT
    return None


def bug_line(exc: BaseException) -> str:
    """One line for an internal error: what, where, and how to see the traceback."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = ""
    if frames:
        last = frames[-1]
        where = f" at {_short(last.filename)}:{last.lineno}"
    detail = one_line(str(exc))
    return (f"error: internal error (a bug in edge-compress, please report it): {type(exc).__name__}"
            f"{f': {detail}' if detail else ''}{where}; rerun with 'compress --debug' for the traceback")


def _disk_full(exc: BaseException) -> str | None:
    """The line for a full disk or quota anywhere in ``exc``'s chain (libraries wrap it), else None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _DISK_FULL:
            where = user_path(current.filename)
            return f"error: {_DISK_FULL[current.errno]}{f' writing {where}' if where else ''}"
        if any(text in str(current) for text in _DISK_FULL_TEXT):
            return "error: no space left on device"
        current = current.__cause__ or current.__context__
    return None


def _os_error_text(exc: OSError) -> str:
    """``path: problem`` for an OSError, naming the file the user gave (never a temporary name)."""
    problem = exc.strerror or one_line(str(exc)) or type(exc).__name__
    if isinstance(exc, PermissionError):
        problem = "permission denied"
    names = [user_path(n) for n in (exc.filename, getattr(exc, "filename2", None)) if n is not None]
    return f"{' -> '.join(names)}: {problem}" if names else problem


def _short(filename: str) -> str:
    """A source file relative to the package root, when it is ours."""
    path = Path(filename)
    for anchor in ("compressor", "targets", "models", "calibration"):
        if anchor in path.parts:
            index = len(path.parts) - 1 - path.parts[::-1].index(anchor)
            return Path(*path.parts[index:]).as_posix()
    return path.name
