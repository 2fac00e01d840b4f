"""Load the user's code: ``path/to/file.py:function`` or ``package.module:function``.

A file is imported the way Python runs a script: its folder goes first on ``sys.path``, so the user's own
sibling packages (a ``models/`` or ``models.py`` of theirs) import as they would in their project. A dotted
module is imported with the working directory on ``sys.path``, as ``python -m`` would.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from compressor.core.errors import CompressError


def is_user_spec(text: str) -> bool:
    """Whether ``text`` names user code (``target:attr``) rather than a registered name."""
    target, sep, attr = text.rpartition(":")
    return bool(sep)


def names_a_file(spec: str) -> bool:
    """Whether ``spec`` (``target:attr``) names a Python file (``path/to/file.py:attr``), not a dotted module
    (a target that is an existing file counts too, so ``model.txt:build`` is told it is not a ``.py`` file)."""
    target = spec.rpartition(":")[0]
    return target.endswith(".py") or "/" in target or os.sep in target or _is_file(target)


def _is_file(text: str) -> bool:
    try:
        return bool(text) and Path(text).is_file()
    except (OSError, ValueError):  # a name too long, or with a NUL byte
        return False


def resolve_beside(text: str, base: Path) -> str:
    """``text`` (a path, or a ``file.py:attr`` spec) with a relative file made absolute against ``base`` when
    it exists there; anything else (a dotted module, a registered name, a missing file) unchanged."""
    file_spec = ":" in text and (names_a_file(text) or _is_file(str(Path(base) / text.rpartition(":")[0])))
    head, sep, tail = text.rpartition(":") if file_spec else (text, "", "")
    candidate = Path(base) / head
    try:
        if head and not Path(head).is_absolute() and candidate.exists():
            return f"{candidate}{sep}{tail}"
    except (OSError, ValueError):  # a name too long, or with a NUL byte: not a file beside the recipe
        pass
    return text


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def _put_first_on_path(folder: Path) -> None:
    entry = str(folder)
    if entry in sys.path:
        sys.path.remove(entry)
    sys.path.insert(0, entry)


def load_file(path_text: str | os.PathLike, *, error: type[CompressError] = CompressError,
              what: str = "file") -> ModuleType:
    """Import a ``.py`` file as a module, with its folder first on ``sys.path``; one-line ``error`` otherwise."""
    path = Path(path_text).expanduser()
    if not _is_file(str(path)):
        raise error(f"{what} {path} is a folder, not a .py file" if _is_dir(path) else f"{what} {path} does not exist")
    if path.suffix != ".py":
        raise error(f"{what} {path} is not a .py file (user code is path/to/file.py:function)")
    path = path.resolve()
    _put_first_on_path(path.parent)
    name = f"_compress_user_{path.stem}_{abs(hash(str(path))) % 10**8}"
    if name in sys.modules:
        return sys.modules[name]
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise error(f"{what} {path} is not a Python file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:  # user code can raise anything
        del sys.modules[name]
        raise error(f"importing {path} raised {type(exc).__name__}: {exc}") from None
    return module


def import_dotted(name: str, *, error: type[CompressError] = CompressError) -> ModuleType:
    """Import ``package.module`` with the working directory on ``sys.path``; one-line ``error`` otherwise."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise error(f"cannot import module '{name}': {exc}") from None
    except Exception as exc:  # user code can raise anything
        raise error(f"importing module '{name}' raised {type(exc).__name__}: {exc}") from None


def load_callable(spec: str, *, error: type[CompressError] = CompressError,
                  what: str = "callable") -> Callable[..., Any]:
    """Resolve ``file.py:function`` or ``package.module:function`` to the callable it names.

    >>> load_callable("os.path:join")("a", "b")
    'a/b'
    """
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr:
        raise error(f"{what} '{spec}' must be file.py:function or package.module:function")
    module = (load_file(target, error=error, what="file") if names_a_file(spec)
              else import_dotted(target, error=error))
    function = getattr(module, attr, None)
    if not callable(function):
        raise error(f"'{target}' has no callable '{attr}'")
    return function
