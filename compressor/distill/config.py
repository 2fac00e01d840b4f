"""Typed configuration from plain mappings (YAML): frozen dataclasses, validated with one-line errors.

Unknown keys get "did you mean", wrong types name the key path and the expected type. A field marked
``metadata={"config": REST}`` collects the keys no other field names (validated by its owner).
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Mapping

from compressor.core.errors import CompressError, did_you_mean


class ConfigError(CompressError):
    """A recipe or configuration value that is unknown, missing or of the wrong type. Its message is one line
    (line breaks and other control characters from the recipe's own text are shown escaped)."""

    def __str__(self) -> str:
        return one_line(super().__str__())


def one_line(text: str) -> str:
    """``text`` with line breaks and other control characters escaped, so an error stays on one line."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


# Field metadata ``{"config": REST}``: the field (typed ``tuple[tuple[str, Any], ...]``) takes every key the
# other fields do not name, as ``(key, value)`` pairs in the given order, for its owner to validate.
REST = "rest"


def from_mapping(cls: type, data: Any, path: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``, checking every key and type.

    >>> @dataclasses.dataclass(frozen=True)
    ... class Train:
    ...     iterations: int = 100
    >>> from_mapping(Train, {"iterations": 5}).iterations
    5
    """
    where = path or "recipe"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {_type_name(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    rest = next((name for name, f in fields.items() if f.metadata.get("config") == REST), None)
    named = {name: f for name, f in fields.items() if name != rest}
    for key in data:
        if key not in named and rest is None:
            raise ConfigError(f"{_join(path, key)}: unknown key{did_you_mean(str(key), fields)}; "
                              f"known keys: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, field in named.items():
        if name in data:
            values[name] = _convert(hints[name], data[name], _join(path, name))
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{_join(path, name)}: missing required key")
    if rest is not None:
        values[rest] = tuple((str(key), value) for key, value in data.items() if key not in named)
    return cls(**values)


def _convert(hint: Any, value: Any, path: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        problems = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(arg, value, path)
            except ConfigError as exc:
                problems.append(str(exc))
        raise ConfigError(problems[0] if len(problems) == 1
                          else f"{path}: {_short(value)} fits none of {_hint_name(hint)}")
    if dataclasses.is_dataclass(hint):
        return from_mapping(hint, value, path)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {_type_name(value)}")
        item = args[0] if args else Any
        return tuple(_convert(item, v, f"{path}[{i}]") for i, v in enumerate(value))
    if origin in (dict, Mapping) or hint is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {_type_name(value)}")
        item = args[1] if len(args) == 2 else Any
        return {str(k): _convert(item, v, f"{path}.{k}") for k, v in value.items()}
    if typing.get_origin(hint) is typing.Literal:
        if value not in args:
            raise ConfigError(f"{path}: {_short(value)} is not one of {', '.join(map(str, args))}"
                              f"{did_you_mean(str(value), map(str, args))}")
        return value
    return _scalar(hint, value, path)


# Integers beyond this are no count, size or seed a recipe means (and overflow numpy, torch and float()).
LARGEST_INT = 2**63 - 1


def _scalar(hint: type, value: Any, path: str) -> Any:
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, int) and abs(value) > LARGEST_INT or not math.isfinite(value):
            raise ConfigError(f"{path}: expected a finite number, got {_short(value)}")
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        if abs(value) > LARGEST_INT:
            raise ConfigError(f"{path}: {_short(value)} is out of range (at most {LARGEST_INT})")
        return value
    if hint in (str, bool) and isinstance(value, hint):
        return value
    raise ConfigError(f"{path}: expected {_hint_name(hint)}, got {_type_name(value)} {_short(value)}")


def _short(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, on one line (recipes may hold anything)."""
    try:
        text = repr(value)
    except ValueError:  # an int too long to print
        text = f"<{type(value).__name__}>"
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _type_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "text", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "nothing"}.get(type(value), type(value).__name__)


def _hint_name(hint: Any) -> str:
    return {int: "an integer", float: "a number", str: "text", bool: "a boolean"}.get(hint, str(hint))


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` merged in recursively (mappings merge, everything else replaces)."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
