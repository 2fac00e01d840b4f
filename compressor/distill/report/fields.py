"""Checked reading of JSON a report is made from (report.json, a device profile): every value has the type and
range the report needs, and a bad one is one line naming the file and the field (``artifacts[2].latency_ms.median``)."""
from __future__ import annotations

import math
from typing import Any, Callable

from compressor.core.errors import CompressError

_MISSING = object()


class Fields:
    """Reads values out of the JSON of ``source``; a missing or bad value raises ``error`` naming the field."""

    def __init__(self, source: str, error: type[CompressError] = CompressError) -> None:
        self.source, self.error = source, error

    def fail(self, where: str, problem: str) -> CompressError:
        """The error for field ``where``."""
        return self.error(f"{self.source}: field {where} {problem}")

    def value(self, data: Any, key: str | int, where: str, default: Any = _MISSING) -> Any:
        """``data[key]``; missing is an error unless a ``default`` is given."""
        here = _join(where, key)
        if isinstance(key, int):
            if not isinstance(data, list):
                raise self.fail(where, f"is {_shown(data)}: expected a list")
        elif not isinstance(data, dict):
            raise self.fail(where or "(top level)", f"is {_shown(data)}: expected an object")
        try:
            return data[key]
        except (KeyError, IndexError):
            if default is not _MISSING:
                return default
            raise self.fail(here, "is missing") from None

    def mapping(self, data: Any, key: str, where: str, *, optional: bool = False) -> dict[str, Any]:
        """An object (``{}`` when optional and absent or null)."""
        value = self.value(data, key, where, None if optional else _MISSING)
        if value is None and optional:
            return {}
        if not isinstance(value, dict):
            raise self.fail(_join(where, key), f"is {_shown(value)}: expected an object")
        return value

    def items(self, data: Any, key: str, where: str, *, optional: bool = False) -> list[Any]:
        """A list (``[]`` when optional and absent or null)."""
        value = self.value(data, key, where, None if optional else _MISSING)
        if value is None and optional:
            return []
        if not isinstance(value, list):
            raise self.fail(_join(where, key), f"is {_shown(value)}: expected a list")
        return value

    def text(self, data: Any, key: str, where: str, *, optional: bool = False, default: Any = None) -> Any:
        """A string (``default`` when optional and absent or null)."""
        value = self.value(data, key, where, None if optional else _MISSING)
        if value is None and optional:
            return default
        if not isinstance(value, str):
            raise self.fail(_join(where, key), f"is {_shown(value)}: expected text")
        return value

    def texts(self, data: Any, key: str, where: str, *, optional: bool = False) -> list[str]:
        """A list of strings."""
        values = self.items(data, key, where, optional=optional)
        for i, value in enumerate(values):
            if not isinstance(value, str):
                raise self.fail(_join(_join(where, key), i), f"is {_shown(value)}: expected text")
        return values

    def flag(self, data: Any, key: str, where: str, *, optional: bool = False) -> Any:
        """A boolean (None when optional and absent or null)."""
        value = self.value(data, key, where, None if optional else _MISSING)
        if value is None and optional:
            return None
        if not isinstance(value, bool):
            raise self.fail(_join(where, key), f"is {_shown(value)}: expected true or false")
        return value

    def number(self, data: Any, key: str, where: str, *, optional: bool = False, finite: bool = True,
               minimum: float | None = None, integer: bool = False) -> Any:
        """A number (not a boolean): finite unless ``finite=False``, at least ``minimum`` when given, whole when
        ``integer``; None when optional and absent or null."""
        value = self.value(data, key, where, None if optional else _MISSING)
        if value is None and optional:
            return None
        return self.check_number(value, _join(where, key), finite=finite, minimum=minimum, integer=integer)

    def check_number(self, value: Any, where: str, *, finite: bool = True, minimum: float | None = None,
                     integer: bool = False) -> Any:
        """``value`` itself checked as :meth:`number` checks a field."""
        kind = "a whole number" if integer else "a number"
        if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
            raise self.fail(where, f"is {_shown(value)}: expected {kind}")
        if finite and not math.isfinite(value):
            raise self.fail(where, f"is {_shown(value)}: expected a finite number")
        if minimum is not None and not value >= minimum:
            raise self.fail(where, f"is {_shown(value)}: expected {kind} >= {minimum:g}")
        return value

    def each(self, values: list[Any], where: str, read: Callable[[Any, str], Any]) -> tuple[Any, ...]:
        """``read(item, "where[i]")`` for every item."""
        return tuple(read(item, _join(where, i)) for i, item in enumerate(values))


def _join(where: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{where}[{key}]"
    return f"{where}.{key}" if where else key


def _shown(value: Any) -> str:
    text = "null" if value is None else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
