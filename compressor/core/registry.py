"""One generic registry for models, losses, recipes: names to factories, with "did you mean"."""
from __future__ import annotations

import fnmatch
from typing import Callable, Generic, Iterator, TypeVar

from compressor.core.errors import unknown_name

T = TypeVar("T")


class Registry(Generic[T]):
    """Map names to objects (usually factories).

    >>> losses = Registry("loss")
    >>> @losses.register("l1")
    ... def l1(): ...
    >>> losses.get("l1") is l1
    True
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator registering an object under ``name`` (default: its ``__name__``)."""

        def add(obj: T) -> T:
            key = name or getattr(obj, "__name__")
            if key in self._entries:
                raise ValueError(f"{self.kind} '{key}' is registered twice")
            self._entries[key] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        """Return the object registered as ``name``; raise UnknownNameError otherwise."""
        try:
            return self._entries[name]
        except KeyError:
            raise unknown_name(self.kind, name, self._entries) from None

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted registered names matching a shell-style ``pattern``."""
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
